//! Verifying a whole chain export from genesis: every certificate, every hash
//! link, every transaction root and count, and every transaction's author
//! (self-signed, or a member of a batch whose seal is in the export).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::header::{CertifiedHeader, verify_certificate, verify_link};
use crate::merkle::{leaf_hash, root_of};
use crate::report::Report;
use crate::trust::TrustRoots;
use crate::tx::{Authorization, Transaction, TxBody};

/// The format tag of a chain export.
pub const EXPORT_FORMAT: &str = "tongban-chain-export/v1";

/// One block of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportBlock {
    /// The certified header (canonical bytes, hex).
    #[serde(with = "crate::hash::hex_bytes")]
    pub header: Vec<u8>,
    /// The transactions in order (canonical bytes, hex).
    pub txs: Vec<String>,
}

/// A chain export: blocks from genesis, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainExport {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The registry the export is checked against.
    pub registry_hash: Hash,
    /// The chain.
    pub chain_id: String,
    /// Blocks from height 0.
    pub blocks: Vec<ExportBlock>,
}

/// One batch seen in an export: who wrote it, the count its seal states
/// (once a verified seal is seen) and the leaves of the members seen so far.
#[derive(Default)]
struct Batch {
    /// Author and chain of the first seal or member seen: all must share them.
    author: Option<(String, String)>,
    /// The count stated by its verified seal.
    count: Option<u32>,
    /// `leaf(signing bytes)` of each member, by index.
    members: BTreeMap<u32, Hash>,
    /// The block of the first member (where a failure is reported).
    first_block: Option<usize>,
    /// All `count` members are in and hash to the root.
    complete: bool,
}

impl Batch {
    /// Seal and members of a batch have one author and chain.
    fn by(&mut self, root: &Hash, tx: &Transaction) -> Result<(), String> {
        match &self.author {
            Some((a, c)) if (a, c) != (&tx.author, &tx.chain_id) => Err(format!(
                "batch {root} is by `{a}` on `{c}`, this transaction by `{}` on `{}`",
                tx.author, tx.chain_id
            )),
            Some(_) => Ok(()),
            None => {
                self.author = Some((tx.author.clone(), tx.chain_id.clone()));
                Ok(())
            }
        }
    }

    /// Checks what can be checked now: the members' places against the
    /// seal's count, and once every member is in, their root.
    fn settle(&mut self, root: &Hash) -> Result<(), String> {
        let Some(count) = self.count else {
            return Ok(());
        };
        if let Some((index, _)) = self.members.range(count..).next() {
            return Err(format!(
                "batch {root}: a member at place {index} of a batch of {count}"
            ));
        }
        if !self.complete && count > 0 && self.members.len() == count as usize {
            let leaves: Vec<Hash> = self.members.values().copied().collect();
            let found = root_of(&leaves);
            if found != *root {
                return Err(format!(
                    "batch {root}: its {count} members hash to {found}, not to the sealed root"
                ));
            }
            self.complete = true;
        }
        Ok(())
    }
}

/// Verifies a chain export from genesis against the trust roots at time
/// `now_ms` (Unix ms). The report has the first failure (naming its block)
/// or one fact for the whole chain.
///
/// Checked (docs/encoding.md section 10.1): each block is at its place (height
/// = position, the export's chain); genesis has `prev` all zeros; every
/// certificate certifies its header (section 9); consecutive headers link; no
/// header is dated after `now_ms` plus the roots' clock skew; each block's
/// transactions decode and give its `tx_count` and `tx_root`; every
/// self-signed transaction's author is a registry member of its kind's role
/// whose signature verifies; and every batch member is authorised by a batch
/// seal in the export: same author and chain, its place below the seal's
/// count, and the batch's members — wherever they are in the export, before
/// or after the seal, in one block or several — hash to the sealed root. A
/// seal may appear more than once; the export has no member paths, so a
/// batch must be in it whole.
pub fn verify_export(export: &ChainExport, roots: &TrustRoots, now_ms: u64) -> Report {
    let mut r = Report::new();
    let s = "chain";
    if export.format != EXPORT_FORMAT {
        r.fails(
            s,
            "export.format",
            "export.format",
            "unknown export format",
            EXPORT_FORMAT,
            &export.format,
        );
        return r;
    }
    if export.registry_hash != roots.registry_hash {
        r.fails(
            s,
            "export.registry",
            "export.registry_mismatch",
            "exported under another registry",
            roots.registry_hash.to_string(),
            export.registry_hash.to_string(),
        );
        return r;
    }
    let Some(trust) = roots.chains.get(&export.chain_id) else {
        r.fails(
            s,
            "chain.known",
            "chain.unknown",
            "the chain is not in the registry",
            "a registry chain",
            &export.chain_id,
        );
        return r;
    };
    if export.blocks.is_empty() {
        r.fails(
            s,
            "chain.genesis",
            "export.empty",
            "the export has no blocks",
            "blocks from genesis",
            "none",
        );
        return r;
    }
    let latest = now_ms.saturating_add(roots.max_clock_skew_ms);
    let mut prev: Option<CertifiedHeader> = None;
    let mut txs_total = 0u64;
    let mut batches: BTreeMap<Hash, Batch> = BTreeMap::new();
    for (i, b) in export.blocks.iter().enumerate() {
        let name = format!("block {i}");
        let fail = |r: &mut Report, code: &'static str, msg: String| {
            r.fails(&name, "block", code, msg, "a valid block", "see message");
        };
        let ch = match CertifiedHeader::decode(&b.header) {
            Ok(h) => h,
            Err(e) => {
                fail(&mut r, "header.malformed", e.to_string());
                return r;
            }
        };
        let h = &ch.header;
        if h.height != i as u64 || h.chain_id != export.chain_id {
            fail(
                &mut r,
                "block.out_of_place",
                format!("height {} of `{}` at position {i}", h.height, h.chain_id),
            );
            return r;
        }
        if i == 0 && h.prev != Hash::default() {
            fail(
                &mut r,
                "header.genesis_prev",
                format!("the genesis header's prev is {}, not all zeros", h.prev),
            );
            return r;
        }
        if let Err(e) = verify_certificate(h, &ch.certificate, trust) {
            fail(&mut r, "header.certificate", e.to_string());
            return r;
        }
        if h.timestamp_ms > latest {
            fail(
                &mut r,
                "header.from_future",
                format!(
                    "dated {} ms, after now ({now_ms} ms) plus the allowed clock skew of {} ms",
                    h.timestamp_ms, roots.max_clock_skew_ms
                ),
            );
            return r;
        }
        if let Some(p) = &prev
            && let Err(e) = verify_link(&p.header, h)
        {
            fail(&mut r, "header.link", e.to_string());
            return r;
        }
        let mut txs = Vec::with_capacity(b.txs.len());
        for (j, t) in b.txs.iter().enumerate() {
            match crate::hash::decode_hex(t)
                .ok()
                .and_then(|bytes| Transaction::decode(&bytes).ok().map(|tx| (bytes, tx)))
            {
                Some(x) => txs.push(x),
                None => {
                    fail(
                        &mut r,
                        "tx.malformed",
                        format!("transaction {j} does not decode"),
                    );
                    return r;
                }
            }
        }
        let leaves: Vec<Hash> = txs.iter().map(|(b, _)| leaf_hash(b)).collect();
        let root = root_of(&leaves);
        if h.tx_count != txs.len() as u64 || h.tx_root != root {
            fail(
                &mut r,
                "block.tx_root",
                format!(
                    "{} transactions with root {root}; the header says {} with root {}",
                    txs.len(),
                    h.tx_count,
                    h.tx_root
                ),
            );
            return r;
        }
        // Authors: self-signed (a seal among them), or batch members,
        // settled against their seal wherever it is in the export.
        for (j, (_, tx)) in txs.iter().enumerate() {
            if tx.chain_id != export.chain_id {
                fail(
                    &mut r,
                    "tx.wrong_chain",
                    format!(
                        "transaction {j} is for chain `{}`, in a block of `{}`",
                        tx.chain_id, export.chain_id
                    ),
                );
                return r;
            }
            let ok = match (&tx.auth, &tx.body) {
                (Authorization::Signed(_), TxBody::BatchSeal { root, count }) => tx
                    .verify_author(roots)
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        let batch = batches.entry(*root).or_default();
                        batch.by(root, tx)?;
                        match batch.count {
                            Some(n) if n != *count => Err(format!(
                                "a second seal of batch {root} for {count} members; the first is for {n}"
                            )),
                            _ => {
                                batch.count = Some(*count);
                                batch.settle(root)
                            }
                        }
                    }),
                (Authorization::Signed(_), _) => tx.verify_author(roots).map_err(|e| e.to_string()),
                (Authorization::Batched { .. }, TxBody::BatchSeal { .. }) => {
                    Err("a batch seal cannot itself be a batch member".to_owned())
                }
                (Authorization::Batched { root, index }, _) => tx
                    .verify_role(roots)
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        let batch = batches.entry(*root).or_default();
                        batch.by(root, tx)?;
                        batch.first_block.get_or_insert(i);
                        let leaf = leaf_hash(&tx.signing_bytes());
                        match batch.members.get(index) {
                            Some(l) if *l != leaf => Err(format!(
                                "two different members at place {index} of batch {root}"
                            )),
                            Some(_) => Ok(()),
                            None => {
                                batch.members.insert(*index, leaf);
                                batch.settle(root)
                            }
                        }
                    }),
            };
            if let Err(e) = ok {
                fail(&mut r, "tx.author", format!("transaction {j}: {e}"));
                return r;
            }
        }
        txs_total += txs.len() as u64;
        prev = Some(ch);
    }
    // Batches whose members are in the export but not authorised by it.
    for (root, b) in &batches {
        if b.complete {
            continue;
        }
        let Some(block) = b.first_block else {
            continue; // a seal whose members are not (or not yet) committed
        };
        let msg = match &b.count {
            None => format!("batch {root}: members whose seal is not in the export"),
            Some(count) => format!(
                "batch {root}: {} of its {count} members in the export (without member paths, a batch is checked whole)",
                b.members.len()
            ),
        };
        r.fails(
            &format!("block {block}"),
            "block",
            "tx.author",
            msg,
            "a valid block",
            "see message",
        );
        return r;
    }
    r.holds(
        s,
        "chain.verified",
        format!(
            "{} blocks from genesis and {txs_total} transactions: certificates, links, roots and authors",
            export.blocks.len()
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Header;
    use crate::subject::SubjectRef;
    use crate::testkit::{TEST_REGISTRY_HASH, TEST_TIME_MS, TestChain};

    const NOW: u64 = TEST_TIME_MS + 86_400_000;

    fn record(i: u8) -> TxBody {
        TxBody::RecordCommit {
            record_type: "marriage".into(),
            record_id: format!("imp{i}"),
            subjects: vec![SubjectRef(Hash([8; 32]))],
            version: 1,
            commitment: Hash([i; 32]),
            issued_ms: 1,
        }
    }

    /// An export of blocks holding `blocks[h]` at height h, each dated `ts(h)`.
    fn export_with(
        tc: &TestChain,
        blocks: &[Vec<Transaction>],
        genesis_prev: Hash,
        ts: impl Fn(u64) -> u64,
    ) -> ChainExport {
        let mut prev = genesis_prev;
        let mut out = Vec::new();
        for (h, txs) in blocks.iter().enumerate() {
            let leaves: Vec<Hash> = txs.iter().map(|t| leaf_hash(&t.encode())).collect();
            let header = Header {
                chain_id: tc.chain_id.clone(),
                height: h as u64,
                prev,
                timestamp_ms: ts(h as u64),
                tx_count: txs.len() as u64,
                tx_root: root_of(&leaves),
            };
            prev = header.hash();
            let ch = tc.certify(header, 2);
            out.push(ExportBlock {
                header: ch.encode(),
                txs: txs.iter().map(|t| hex::encode(t.encode())).collect(),
            });
        }
        ChainExport {
            format: EXPORT_FORMAT.into(),
            registry_hash: TEST_REGISTRY_HASH,
            chain_id: tc.chain_id.clone(),
            blocks: out,
        }
    }

    fn export(tc: &TestChain, blocks: &[Vec<Transaction>]) -> ChainExport {
        export_with(tc, blocks, Hash::default(), |h| TEST_TIME_MS + h)
    }

    fn setup() -> (TestChain, Transaction, Vec<Transaction>) {
        let tc = TestChain::new("t-chain", 3, 2);
        let (seal, members) = Transaction::batch(
            &tc.chain_id,
            &tc.department.0,
            (0..3).map(record).collect(),
            &tc.department.1,
        );
        (tc, seal, members)
    }

    fn verdict(tc: &TestChain, e: &ChainExport) -> Result<(), String> {
        let r = verify_export(e, &tc.roots, NOW);
        if r.ok() { Ok(()) } else { Err(format!("{r}")) }
    }

    #[test]
    fn chain_with_seal_and_members_in_one_block_verifies() {
        let (tc, seal, members) = setup();
        let (signed, _) = tc.record_tx(1);
        let mut b1 = vec![signed, seal];
        b1.extend(members);
        verdict(&tc, &export(&tc, &[vec![], b1])).unwrap();
    }

    #[test]
    fn chain_batch_seal_in_the_block_before_its_members_verifies() {
        let (tc, seal, members) = setup();
        verdict(&tc, &export(&tc, &[vec![seal.clone()], members.clone()])).unwrap();
        // Members split over two blocks after the seal, and members before it.
        let e = export(
            &tc,
            &[
                vec![seal.clone()],
                members[..1].to_vec(),
                members[1..].to_vec(),
            ],
        );
        verdict(&tc, &e).unwrap();
        verdict(&tc, &export(&tc, &[members.clone(), vec![seal]])).unwrap();
    }

    #[test]
    fn chain_a_second_valid_seal_repeating_a_root_verifies() {
        let (tc, seal, members) = setup();
        let mut b0 = vec![seal.clone()];
        b0.extend(members.clone());
        // Sent again: the seal with a member, then the seal alone; and the
        // seal twice in one block.
        let b1 = vec![seal.clone(), members[0].clone()];
        let b2 = vec![seal.clone(), seal];
        verdict(&tc, &export(&tc, &[b0, b1, b2])).unwrap();
    }

    #[test]
    fn chain_batch_members_not_authorised_are_refused() {
        let (tc, seal, members) = setup();
        // No seal anywhere.
        let err = verdict(&tc, &export(&tc, std::slice::from_ref(&members))).unwrap_err();
        assert!(err.contains("seal is not in the export"), "{err}");
        // A member left out: the batch cannot be checked whole.
        let err = verdict(
            &tc,
            &export(&tc, &[vec![seal.clone()], members[..2].to_vec()]),
        )
        .unwrap_err();
        assert!(err.contains("2 of its 3 members"), "{err}");
        // Another transaction at a member's place.
        let mut forged = members.clone();
        forged[1].body = record(9);
        let mut b = vec![seal.clone()];
        b.extend(forged);
        let err = verdict(&tc, &export(&tc, &[b])).unwrap_err();
        assert!(err.contains("not to the sealed root"), "{err}");
        // A second, different member at a place already taken.
        let mut b = vec![seal.clone()];
        b.extend(members.clone());
        let mut other = members[1].clone();
        other.body = record(9);
        b.push(other);
        let err = verdict(&tc, &export(&tc, &[b])).unwrap_err();
        assert!(err.contains("two different members at place 1"), "{err}");
        // A place beyond the seal's count.
        let mut b = vec![seal.clone()];
        b.extend(members.clone());
        let mut beyond = members[0].clone();
        if let Authorization::Batched { index, .. } = &mut beyond.auth {
            *index = 3;
        }
        b.push(beyond);
        let err = verdict(&tc, &export(&tc, &[b])).unwrap_err();
        assert!(err.contains("place 3 of a batch of 3"), "{err}");
        // A seal by an unknown author authorises nothing.
        let stranger = crate::keys::SigningKey::from_seed(&crate::keys::test_seed("stranger"));
        let (seal2, members2) =
            Transaction::batch(&tc.chain_id, "t.stranger", vec![record(1)], &stranger);
        let mut b = vec![seal2];
        b.extend(members2);
        assert!(verdict(&tc, &export(&tc, &[b])).is_err());
    }

    #[test]
    fn chain_genesis_with_a_nonzero_prev_is_refused() {
        let (tc, seal, members) = setup();
        let mut b0 = vec![seal];
        b0.extend(members);
        let e = export_with(&tc, &[b0, vec![]], Hash([1; 32]), |h| TEST_TIME_MS + h);
        let err = verdict(&tc, &e).unwrap_err();
        assert!(err.contains("header.genesis_prev"), "{err}");
    }

    #[test]
    fn chain_blocks_dated_in_2100_are_refused() {
        let (tc, _, _) = setup();
        const Y2100: u64 = 4_102_444_800_000;
        let e = export_with(&tc, &[vec![], vec![]], Hash::default(), |h| {
            if h == 0 { TEST_TIME_MS } else { Y2100 }
        });
        let err = verdict(&tc, &e).unwrap_err();
        assert!(err.contains("header.from_future"), "{err}");
        assert!(err.contains("block 1"), "{err}");
        // Within the allowed skew of now: accepted; just beyond: refused.
        let skew = tc.roots.max_clock_skew_ms;
        let at = |t: u64| export_with(&tc, &[vec![]], Hash::default(), move |_| t);
        verdict(&tc, &at(NOW + skew)).unwrap();
        assert!(verdict(&tc, &at(NOW + skew + 1)).is_err());
    }
}
