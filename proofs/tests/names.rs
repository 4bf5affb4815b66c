//! Issue 15, finding 8: the business-name check compared names exactly after
//! trimming, so lower-case, zero-width-space, double-space and full-width
//! variants of a registered name passed "name free". Names are normalised
//! (`docs/encoding.md` §6) before their subject reference is made.

use proofs::subject::{IdKind, SubjectId, SubjectKey, normalise_name};
use proptest::prelude::*;

fn vectors() -> Vec<(String, String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/vectors/name-normalisation-v1.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["input"].as_str().unwrap().to_owned(),
                x["why"].as_str().unwrap().to_owned(),
                x["normalised"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_published_vectors_hold() {
    let v = vectors();
    assert!(v.len() >= 10);
    for (input, why, expected) in v {
        assert_eq!(normalise_name(&input), expected, "{why}");
    }
}

#[test]
fn variants_of_a_registered_name_get_its_subject_reference() {
    let key = SubjectKey::from_bytes([7; 32]);
    let reference = |s: &str| key.reference(&SubjectId::new(IdKind::Name, s).unwrap());
    let registered = reference("Nanjing Yangtze Data Co., Ltd.");
    for variant in [
        "nanjing yangtze data co., ltd.",
        "Nanjing Yangtze\u{200b} Data Co., Ltd.",
        "Nanjing  Yangtze Data Co.,  Ltd.",
        "Ｎａｎｊｉｎｇ　Ｙａｎｇｔｚｅ　Ｄａｔａ　Ｃｏ．，　Ｌｔｄ．",
        "\u{feff}NANJING YANGTZE DATA CO., LTD.\u{2060}",
    ] {
        assert_eq!(reference(variant), registered, "{variant:?}");
    }
    let zh = reference("南京长江数据科技有限公司");
    assert_eq!(reference("南京长江\u{200b}数据科技有限公司 "), zh);
    // Another name is another reference.
    assert_ne!(reference("南京长江数据科技有限责任公司"), zh);
    // Names made only of format characters or spaces are refused.
    assert!(SubjectId::new(IdKind::Name, "\u{200b}\u{3000} ").is_err());
    // A full-width identity number is read as the number.
    let id = "320102198500000138";
    let plain = SubjectId::infer(id);
    let wide: String = id
        .chars()
        .map(|c| char::from_u32(u32::from(c) + 0xFEE0).unwrap())
        .collect();
    assert_eq!(plain.as_ref().map(SubjectId::kind), Ok(IdKind::Resident));
    assert_eq!(SubjectId::infer(&wide), plain);
}

proptest! {
    /// The ASCII fast path gives what the full steps give.
    #[test]
    fn ascii_takes_the_same_steps(s in "[ -~\t\n]{0,40}") {
        use unicode_normalization::UnicodeNormalization;
        let full: String = s.nfkc().collect::<String>().to_lowercase();
        let full = full.split_whitespace().collect::<Vec<_>>().join(" ");
        prop_assert_eq!(normalise_name(&s), full);
    }

    #[test]
    fn normalisation_is_idempotent(s in "\\PC{0,40}") {
        let once = normalise_name(&s);
        prop_assert_eq!(normalise_name(&once), once);
    }

    #[test]
    fn case_spacing_and_zero_width_do_not_change_an_ascii_name(
        words in proptest::collection::vec("[A-Za-z0-9]{1,8}", 1..5),
        upper in any::<bool>(),
        zw in any::<bool>(),
        wide in any::<bool>(),
    ) {
        let plain = words.join(" ");
        let mut v = if upper { plain.to_uppercase() } else { plain.to_lowercase() };
        if zw {
            v = v.replace(' ', " \u{200b} ");
        }
        if wide {
            v = v.chars().map(|c| if c.is_ascii_alphanumeric() {
                char::from_u32(u32::from(c) + 0xFEE0).unwrap()
            } else if c == ' ' { '\u{3000}' } else { c }).collect();
        }
        prop_assert_eq!(normalise_name(&v), plain.to_lowercase());
    }
}
