//! The `tongban` CLI against a running `tongban serve`: key generation, region
//! check, bulk import with per-line rejections, an interrupted import resumed
//! without duplicates, and a proof fetched and verified locally.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

fn tongban() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tongban"));
    c.env("TONGBAN_LOG", "warn");
    c
}

fn serve(files: &CityFiles) -> (std::process::Child, String) {
    let mut child = tongban()
        .args(["serve", "--config"])
        .arg(&files.config_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (
        child,
        line.trim().trim_start_matches("listening on ").to_owned(),
    )
}

/// The client arguments of `member` (its key file and the city's subject key).
fn member_args(files: &CityFiles, url: &str, member: &str) -> Vec<String> {
    let keys = files.dir.path().join("keys");
    vec![
        "--gateway".into(),
        url.into(),
        "--registry".into(),
        files.registry_path.display().to_string(),
        "--key".into(),
        keys.join(format!("{member}.ed25519.key"))
            .display()
            .to_string(),
        "--subject-key".into(),
        keys.join("subject.key").display().to_string(),
    ]
}

fn client_args(files: &CityFiles, url: &str) -> Vec<String> {
    member_args(files, url, "nanjing.civil-affairs")
}

fn write_jsonl(path: &std::path::Path, n: u64) {
    let mut out = String::new();
    for i in 0..n {
        match i {
            7 => out.push_str("{\"record_type\": \"marriage\", broken\n"),
            9 => out.push_str(&format!("{{\"record_type\": \"marriage\", \"record_id\": \"bad\", \"fields\": {{\"colour\": \"red\", \"party_a_id\": \"{}\"}}}}\n", resident(i))),
            _ => {
                let mut m = marriage(&format!("IMP-{i:06}"), 1, i, i + 90_000, "married");
                m.issued_ms = 1_500_000_000_000;
                out.push_str(&serde_json::to_string(&m).unwrap());
                out.push('\n');
            }
        }
    }
    std::fs::write(path, out).unwrap();
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn import_reports_lines_resumes_and_never_duplicates() {
    let files = city_files("nanjing", "");
    let (mut child, url) = serve(&files);
    let file = files.dir.path().join("licences.jsonl");
    write_jsonl(&file, 3000);
    let args = client_args(&files, &url);

    // Interrupt an import part-way (SIGKILL of the importer), then resume.
    let mut first = tongban()
        .arg("records")
        .args(&args)
        .args(["import"])
        .arg(&file)
        .args(["--batch", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = first.kill();
    let _ = first.wait();
    let resumed = summary(
        &tongban()
            .arg("records")
            .args(&args)
            .args(["import"])
            .arg(&file)
            .args(["--batch", "100"])
            .output()
            .unwrap(),
    );
    let rejected = resumed["rejected"].as_object().unwrap();
    let done =
        resumed["imported"].as_u64().unwrap() + resumed["skipped_duplicate"].as_u64().unwrap();
    let resumed_after = resumed["resumed_after_line"].as_u64().unwrap();
    // Every line after the resume point is accounted for exactly once.
    let bad_after = [8u64, 10].iter().filter(|l| **l > resumed_after).count() as u64;
    assert_eq!(done + bad_after, 3000 - resumed_after, "{resumed}");
    assert_eq!(rejected.len() as u64, bad_after);

    // Starting over finds everything there: duplicates, and the same two bad lines.
    let again = summary(
        &tongban()
            .arg("records")
            .args(&args)
            .args(["import", "--restart"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    assert_eq!(again["imported"], 0);
    assert_eq!(again["skipped_duplicate"], 2998);
    let rej = again["rejected"].as_object().unwrap();
    assert_eq!(rej.keys().cloned().collect::<Vec<_>>(), ["10", "8"]);
    assert!(rej["8"].as_str().unwrap().contains("not a record"));
    assert!(rej["10"].as_str().unwrap().contains("fields.colour"));

    // Each record is on the chain exactly once.
    let got = tongban()
        .arg("records")
        .args(&args)
        .args(["get", "marriage", "IMP-002999"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(v["versions"].as_array().unwrap().len(), 1);
    let leaf = v["versions"][0]["location"]["leaf"]
        .as_str()
        .unwrap()
        .to_owned();

    // The proof command fetches the batch member's bundle and verifies it locally.
    let p = tongban()
        .arg("proof")
        .args(&args)
        .arg(&leaf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&p.stdout);
    assert!(
        p.status.success() && text.contains("member") && !text.contains("FAIL"),
        "{text}"
    );

    // The whole chain, batches included, verifies offline from genesis.
    let exported = tongban()
        .arg("chain")
        .args(&args)
        .arg("export")
        .output()
        .unwrap();
    assert!(exported.status.success());
    let export = files.dir.path().join("chain.json");
    std::fs::write(&export, &exported.stdout).unwrap();
    let check = tongban()
        .args(["inspect", "chain"])
        .arg(&export)
        .arg("--registry")
        .arg(&files.registry_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(String::from_utf8_lossy(&exported.stdout).contains("\"txs\""));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn keys_gen_and_region_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = tongban()
        .args(["keys", "gen", "--id", "suzhou.tax", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("signing_key = \"") && text.contains("hpke_key = \""),
        "{text}"
    );
    let key = dir.path().join("suzhou.tax.ed25519.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never overwritten.
    assert!(
        !tongban()
            .args(["keys", "gen", "--id", "suzhou.tax", "--out"])
            .arg(dir.path())
            .output()
            .unwrap()
            .status
            .success()
    );

    let out = tongban()
        .args(["region", "check"])
        .arg(example_registry())
        .output()
        .unwrap();
    assert!(out.status.success());
    let (_, hash) = regions::load(example_registry()).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&hash.to_hex()));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(example_registry())
            .unwrap()
            .replacen("threshold = 3", "threshold = 9", 1),
    )
    .unwrap();
    let out = tongban()
        .args(["region", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("threshold"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_centre_operator_asks_a_match_from_the_command_line() {
    let files = city_files("nanjing", "");
    let (mut child, url) = serve(&files);
    // The civil-affairs bureau publishes a marriage record.
    let record = files.dir.path().join("m.json");
    std::fs::write(
        &record,
        serde_json::to_vec(&marriage("CLI-M-1", 1, 501, 502, "married")).unwrap(),
    )
    .unwrap();
    let out = tongban()
        .args(["records"])
        .args(client_args(&files, &url))
        .args(["publish"])
        .arg(&record)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The service centre asks; the subject comes on stdin, never as an argument.
    let keys = files.dir.path().join("keys");
    let ask = |subject: String| {
        let mut c = tongban()
            .args(["match", "--gateway", &url, "--registry"])
            .arg(&files.registry_path)
            .arg("--key")
            .arg(keys.join("nanjing.centre.ed25519.key"))
            .arg("--hpke-key")
            .arg(keys.join("nanjing.centre.hpke.key"))
            .args([
                "--provider",
                "nanjing.civil-affairs",
                "--contract",
                "house-transfer.marriage",
                "--predicates",
                r#"[{"field":"status","op":"eq","value":"married"}]"#,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(c.stdin.take().unwrap(), "{subject}").unwrap();
        c.wait_with_output().unwrap()
    };
    let yes = summary(&ask(resident(501)));
    assert_eq!(yes["verdict"], "holds", "{yes:#}");
    assert!(yes["facts_verified"].as_u64().unwrap() >= 8);
    let none = summary(&ask(resident(999)));
    assert_eq!(none["verdict"], "no_record");
    // A resident identity number with a wrong check digit is refused, not guessed at.
    let mut typo = resident(501);
    let last = typo.pop().unwrap();
    typo.push(if last == '1' { '2' } else { '1' });
    let bad = ask(typo);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("match.subject"));
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn business_opening_from_the_command_line_then_inspected_offline() {
    let files = city_files("nanjing", "");
    let (mut child, url) = serve(&files);
    let keys = files.dir.path().join("keys");
    let as_member = |member: &str| member_args(&files, &url, member);
    let run = |args: Vec<String>| -> serde_json::Value {
        let out = tongban().args(args).output().unwrap();
        summary(&out)
    };
    let founder = resident(4242);
    // The founder's identity card, valid for years.
    let id_card = files.dir.path().join("id.json");
    std::fs::write(
        &id_card,
        serde_json::to_vec(&serde_json::json!({
            "record_type": "resident-identity", "record_id": "ID-4242", "version": 1, "issued_ms": 1_600_000_000_000u64,
            "fields": { "id_number": founder, "name": "Zhang San", "sex": "M", "birth_date": "1985-01-02",
                        "hukou_city": "nanjing", "valid_until": "2040-01-01" },
        }))
        .unwrap(),
    )
    .unwrap();
    let mut a = vec!["records".to_string()];
    a.extend(as_member("nanjing.public-security"));
    a.extend(["publish".into(), id_card.display().to_string()]);
    run(a);
    // The centre submits the application.
    let params = files.dir.path().join("params.json");
    std::fs::write(
        &params,
        serde_json::to_vec(&serde_json::json!({
            "business_city": "nanjing", "founder_id": founder, "founder_city": "nanjing",
            "proposed_name": "Nanjing Bright Tea House Ltd", "premises_address": "8 Hunan Road",
            "registered_capital_yuan": 100000, "contact_phone": "13900000000",
        }))
        .unwrap(),
    )
    .unwrap();
    let centre = |cmd: &[&str]| {
        let mut a = vec!["applications".to_string()];
        a.extend(as_member("nanjing.centre"));
        a.extend(cmd.iter().map(|s| s.to_string()));
        run(a)
    };
    let submitted = centre(&[
        "submit",
        "--bundle",
        "business-opening",
        "--reference",
        "BO-1",
        params.to_str().unwrap(),
    ]);
    let id = submitted["id"].as_str().unwrap().to_owned();
    let wait = |phase: &str| {
        for _ in 0..200 {
            let s = centre(&["status", &id]);
            if s["phase"] == phase {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("never reached {phase}: {:#}", centre(&["status", &id]));
    };
    wait("dispatching");
    // Each recipient reads its request and acknowledges it.
    for member in [
        "nanjing.market-regulation",
        "nanjing.tax",
        "nanjing.hr-social-security",
        "nanjing.electricity",
    ] {
        let mut a = vec!["utility".to_string()];
        a.extend(as_member(member));
        let mut inbox = a.clone();
        inbox.extend([
            "inbox".into(),
            "--hpke-key".into(),
            keys.join(format!("{member}.hpke.key"))
                .display()
                .to_string(),
        ]);
        let items = run(inbox);
        assert_eq!(items.as_array().unwrap().len(), 1, "{member}: {items:#}");
        assert_eq!(items[0]["fields"]["address"], "8 Hunan Road", "{items:#}");
        let delivery = items[0]["delivery"].as_str().unwrap().to_owned();
        let mut ack = a.clone();
        ack.extend(["ack".into(), delivery]);
        assert_eq!(run(ack)["outcome"], "written");
    }
    wait("completed");
    // The evidence package, checked offline with the registry alone.
    let out = tongban()
        .arg("applications")
        .args(as_member("nanjing.centre"))
        .args(["evidence", &id])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pkg = files.dir.path().join("package.json");
    std::fs::write(&pkg, &out.stdout).unwrap();
    // The whole chain, exported and verified from genesis offline.
    let exported = tongban()
        .arg("chain")
        .args(as_member("nanjing.centre"))
        .arg("export")
        .output()
        .unwrap();
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let export = files.dir.path().join("chain.json");
    std::fs::write(&export, &exported.stdout).unwrap();
    let check = |p: &std::path::Path| {
        tongban()
            .args(["inspect", "chain"])
            .arg(p)
            .arg("--registry")
            .arg(&files.registry_path)
            .output()
            .unwrap()
    };
    let good = check(&export);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    let mut e: serde_json::Value = serde_json::from_slice(&exported.stdout).unwrap();
    let blocks = e["blocks"].as_array().unwrap().len();
    assert!(blocks > 5, "{blocks} blocks");
    // One flipped hex digit in one transaction: the chain no longer verifies.
    let tx = e["blocks"][blocks / 2]["txs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c: Vec<char> = tx.chars().collect();
    let i = c.len() - 10;
    c[i] = if c[i] == '0' { '1' } else { '0' };
    e["blocks"][blocks / 2]["txs"][0] = serde_json::Value::String(c.into_iter().collect());
    let bad_export = files.dir.path().join("chain-bad.json");
    std::fs::write(&bad_export, serde_json::to_vec(&e).unwrap()).unwrap();
    assert_eq!(check(&bad_export).status.code(), Some(1));
    child.kill().unwrap();
    child.wait().unwrap();
    let inspect = |p: &std::path::Path| {
        tongban()
            .args(["inspect", "verify"])
            .arg(p)
            .arg("--registry")
            .arg(&files.registry_path)
            .output()
            .unwrap()
    };
    let ok = inspect(&pkg);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("VERIFIED: every fact holds"));
    // One changed digit in the application's JSON: refused, exit code 1.
    let text = String::from_utf8(out.stdout).unwrap();
    let bad = files.dir.path().join("bad.json");
    std::fs::write(&bad, text.replacen("13900000000", "13900000001", 1)).unwrap();
    let no = inspect(&bad);
    assert_eq!(no.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no.stdout).contains("application.not_committed"));
}

#[test]
fn json_logs_carry_request_ids_and_never_a_subject_identifier_or_key() {
    let files = city_files("nanjing", "");
    let log = files.dir.path().join("gateway.log");
    let mut child = tongban()
        .env("TONGBAN_LOG", "info,gateway=debug,relay=debug")
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&files.config_path)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().trim_start_matches("listening on ").to_owned();
    // A department publishes, reads back and lists the accesses: every call
    // carries identifiers of the subject in its (signed) body or answer.
    let record = files.dir.path().join("m.json");
    std::fs::write(
        &record,
        serde_json::to_vec(&marriage("LOG-M-1", 1, 701, 702, "married")).unwrap(),
    )
    .unwrap();
    let run = |args: &[&str], stdin: Option<String>| {
        let mut c = tongban()
            .args(args.first().copied())
            .args(client_args(&files, &url))
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            writeln!(c.stdin.take().unwrap(), "{s}").unwrap();
        }
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["records", "publish", record.to_str().unwrap()], None);
    run(&["records", "get", "marriage", "LOG-M-1"], None);
    run(&["records", "access-ledger"], Some(resident(701)));
    // A request with the caller's id: the id is on the response and in the log.
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /v1/inbox HTTP/1.1\r\nhost: {addr}\r\nx-request-id: log-check-7\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-request-id: log-check-7"),
        "{resp}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 4, "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.to_string().contains("\"request_id\":\"log-check-7\"")),
        "no log line names the request id:\n{text}"
    );
    // Never a subject's identifier, a record's values, nor a secret key.
    for forbidden in [resident(701), resident(702)] {
        assert!(
            !text.contains(&forbidden),
            "the log holds a subject identifier"
        );
    }
    for value in ["Xuanwu District Marriage Registry", "2019-05-20"] {
        assert!(
            !text.contains(value),
            "the log holds the record value `{value}`"
        );
    }
    let keys = files.dir.path().join("keys");
    for k in [
        "gateway.key",
        "subject.key",
        "nanjing.civil-affairs.ed25519.key",
    ] {
        let file = std::fs::read_to_string(keys.join(k)).unwrap();
        for word in file.split(|c: char| !c.is_ascii_hexdigit()) {
            if word.len() >= 64 {
                assert!(!text.contains(word), "the log holds key material of {k}");
            }
        }
    }
}

/// A plain HTTP/1.1 request over a real socket; returns (status, body).
fn http_raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    let declared = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !declared {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn metric(url: &str, name: &str) -> u64 {
    let addr = url.trim_start_matches("http://");
    let (_, text) = http_raw(addr, "GET", "/metrics", &[], b"");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `tongban utility receive` as a child: its address and a channel of the JSON lines it prints.
fn receiver(
    files: &CityFiles,
    url: &str,
    member: &str,
    listen: &str,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let keys = files.dir.path().join("keys");
    let mut child = tongban()
        .arg("utility")
        .args(["--gateway", url, "--registry"])
        .arg(&files.registry_path)
        .arg("--key")
        .arg(keys.join(format!("{member}.ed25519.key")))
        .args(["receive", "--listen", listen, "--hpke-key"])
        .arg(keys.join(format!("{member}.hpke.key")))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, format!("listening on {listen}"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx.send(serde_json::from_str(&l).unwrap()).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

#[test]
fn webhook_push_reaches_a_late_receiver_again_after_a_gateway_crash_and_never_after_ack() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = format!("127.0.0.1:{port}");
    let files = city_files(
        "nanjing",
        &format!("\n[webhooks]\n\"nanjing.electricity\" = \"http://{hook}/tongban/push?v=1\"\n"),
    );
    let (mut gw, url) = serve(&files);
    let as_member = |url: &str, member: &str| member_args(&files, url, member);
    let run = |args: Vec<String>| -> serde_json::Value {
        summary(&tongban().args(args).output().unwrap())
    };
    let founder = resident(4343);
    let id_card = files.dir.path().join("id.json");
    std::fs::write(
        &id_card,
        serde_json::to_vec(&serde_json::json!({
            "record_type": "resident-identity", "record_id": "ID-4343", "version": 1, "issued_ms": 1_600_000_000_000u64,
            "fields": { "id_number": founder, "name": "Li Si", "sex": "F", "birth_date": "1988-03-04",
                        "hukou_city": "nanjing", "valid_until": "2040-01-01" },
        }))
        .unwrap(),
    )
    .unwrap();
    let mut a = vec!["records".to_string()];
    a.extend(as_member(&url, "nanjing.public-security"));
    a.extend(["publish".into(), id_card.display().to_string()]);
    run(a);
    let params = files.dir.path().join("params.json");
    std::fs::write(
        &params,
        serde_json::to_vec(&serde_json::json!({
            "business_city": "nanjing", "founder_id": founder, "founder_city": "nanjing",
            "proposed_name": "Nanjing Quiet Bookshop Ltd", "premises_address": "12 Zhongshan Road",
            "registered_capital_yuan": 50000, "contact_phone": "13900000002",
        }))
        .unwrap(),
    )
    .unwrap();
    let mut a = vec!["applications".to_string()];
    a.extend(as_member(&url, "nanjing.centre"));
    a.extend(
        [
            "submit",
            "--bundle",
            "business-opening",
            "--reference",
            "BO-W",
        ]
        .map(String::from),
    );
    a.push(params.display().to_string());
    let application = run(a)["id"].as_str().unwrap().to_owned();

    // The receiver is not up yet: the gateway keeps trying.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&url, "tongban_webhook_failed_attempts_total") < 2 {
        assert!(std::time::Instant::now() < deadline, "no push attempt seen");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(metric(&url, "tongban_webhook_delivered_total"), 0);
    let (mut rcv, lines) = receiver(&files, &url, "nanjing.electricity", &hook);
    let got = lines
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the push after the receiver came up");
    assert_eq!(got["application"], application.as_str(), "{got:#}");
    assert_eq!(got["fields"]["address"], "12 Zhongshan Road", "{got:#}");
    assert_eq!(got["centre"], "nanjing.centre");
    let delivery = got["delivery"].as_str().unwrap().to_owned();
    // Only electricity has a webhook; exactly one push was acknowledged.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(metric(&url, "tongban_webhook_delivered_total"), 1);
    assert!(lines.try_recv().is_err(), "pushed twice");

    // Pushes that are not the city gateway's own are refused over the socket.
    let push = |headers: &[(&str, String)], body: &[u8]| {
        http_raw(&hook, "POST", "/tongban/push?v=1", headers, body)
    };
    let (st, b) = push(&[], b"{}");
    assert_eq!(st, 401, "{b}");
    assert!(b.contains("auth.missing"), "{b}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let signed =
        |signer: &str, audience: &str, pq: &str, body: &[u8]| -> Vec<(&'static str, String)> {
            gateway::auth::sign_request(
                &key(signer),
                signer,
                audience,
                "POST",
                pq,
                now,
                &gateway::auth::fresh_nonce(),
                body,
            )
            .to_vec()
        };
    let (st, b) = push(
        &signed(
            "nanjing.centre",
            "nanjing.electricity",
            "/tongban/push?v=1",
            b"{}",
        ),
        b"{}",
    );
    assert_eq!((st, b.contains("webhook.wrong_sender")), (403, true), "{b}");
    let (st, b) = push(
        &signed("nanjing.gateway", "nanjing.gas", "/tongban/push?v=1", b"{}"),
        b"{}",
    );
    assert_eq!((st, b.contains("auth.bad_signature")), (401, true), "{b}");
    let (st, b) = push(
        &signed("nanjing.gateway", "nanjing.electricity", "/other", b"{}"),
        b"{}",
    );
    assert_eq!((st, b.contains("auth.bad_signature")), (401, true), "{b}");
    let (st, b) = push(
        &signed(
            "nanjing.gateway",
            "nanjing.electricity",
            "/tongban/push?v=1",
            b"{}",
        ),
        b"{}",
    );
    assert_eq!((st, b.contains("webhook.bad_item")), (422, true), "{b}");
    let (st, b) = push(&[("content-length", "300000".into())], b"");
    assert_eq!((st, b.contains("webhook.too_large")), (413, true), "{b}");
    let (st, _) = http_raw(&hook, "GET", "/tongban/push?v=1", &[], b"");
    assert_eq!(st, 405);
    assert!(lines.try_recv().is_err(), "a refused push was printed");

    // The gateway crashes; a new receiver (no memory of the first) gets the
    // still-open request again once the gateway is back.
    gw.kill().unwrap();
    gw.wait().unwrap();
    rcv.kill().unwrap();
    rcv.wait().unwrap();
    let (mut gw, url) = serve(&files);
    let (mut rcv, lines) = receiver(&files, &url, "nanjing.electricity", &hook);
    let again = lines
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("re-pushed after restart");
    assert_eq!(again["delivery"], delivery.as_str());
    // Closed with a receipt, it is never pushed again, not even after a restart.
    let mut ack = vec!["utility".to_string()];
    ack.extend(as_member(&url, "nanjing.electricity"));
    ack.extend(["ack".into(), delivery.clone()]);
    assert_eq!(run(ack)["outcome"], "written");
    gw.kill().unwrap();
    gw.wait().unwrap();
    rcv.kill().unwrap();
    rcv.wait().unwrap();
    let (mut gw, url) = serve(&files);
    let (mut rcv, lines) = receiver(&files, &url, "nanjing.electricity", &hook);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(lines.try_recv().is_err(), "a closed request was pushed");
    assert_eq!(metric(&url, "tongban_webhook_delivered_total"), 0);
    assert_eq!(metric(&url, "tongban_webhook_failed_attempts_total"), 0);
    rcv.kill().unwrap();
    rcv.wait().unwrap();
    gw.kill().unwrap();
    gw.wait().unwrap();
}

/// Issue 15 item 23: the inspector says plainly what a verified package
/// cannot show, in its text and its JSON output.
#[test]
fn inspect_verify_states_what_a_package_cannot_show() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = |json: bool| {
        let mut c = tongban();
        c.args(["inspect", "verify"])
            .arg(root.join("docs/vectors/application-package-v1.json"))
            .arg("--registry")
            .arg(root.join("regions/examples/yangtze-delta.toml"));
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let text = run(false);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{stdout}");
    assert!(stdout.contains("VERIFIED: every fact holds"), "{stdout}");
    let note = stdout
        .split("What a package cannot show")
        .nth(1)
        .unwrap_or_else(|| panic!("no closing note:\n{stdout}"));
    for needle in ["signed word", "not revoked", "latest state", "left out"] {
        assert!(note.contains(needle), "{needle}:\n{note}");
    }
    let json = run(true);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let lines = v["cannot_show"].as_array().unwrap();
    assert_eq!(lines.len(), regions::evidence::CANNOT_SHOW.len());
}

/// Runs `tongban ARGS` with an endless standard input (spaces, JSON white
/// space, written until the pipe breaks); returns its output, or panics if it
/// has not exited after `secs` (it would be reading the stream for ever).
fn with_endless_stdin(
    args: &[&str],
    registry: &std::path::Path,
    secs: u64,
) -> std::process::Output {
    use std::io::Write;
    let mut child = tongban()
        .args(args)
        .arg("--registry")
        .arg(registry)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        let mut written = 0u64;
        while stdin.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        written
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "`tongban {}` still reading its endless input after {secs} s",
                args.join(" ")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let written = writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        written <= (64 << 20) + (4 << 20),
        "{written} bytes went into the pipe"
    );
    out
}

#[test]
fn inspect_verify_stdin_is_bounded_before_reading() {
    let files = city_files("nanjing", "");
    let out = with_endless_stdin(&["inspect", "verify", "-"], &files.registry_path, 120);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("standard input: package larger than 67108864 bytes (64 MiB)"),
        "{err}"
    );
    // A file above the bound is refused before it is read (a sparse file).
    let big = files.dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let out = tongban()
        .args(["inspect", "verify"])
        .arg(&big)
        .arg("--registry")
        .arg(&files.registry_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{}: package larger than 67108864 bytes (64 MiB)",
            big.display()
        )),
        "{err}"
    );
}

#[test]
fn inspect_chain_input_is_bounded_before_reading() {
    let files = city_files("nanjing", "");
    let out = with_endless_stdin(
        &["inspect", "chain", "-", "--max-bytes", "1048576"],
        &files.registry_path,
        120,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("standard input: chain export larger than 1048576 bytes (1 MiB)"),
        "{err}"
    );
    // The default bound (1 GiB), on a sparse file just above it.
    let big = files.dir.path().join("export.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((1 << 30) + 1)
        .unwrap();
    let started = std::time::Instant::now();
    let out = tongban()
        .args(["inspect", "chain"])
        .arg(&big)
        .arg("--registry")
        .arg(&files.registry_path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{}: chain export larger than 1073741824 bytes (1 GiB)",
            big.display()
        )),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
