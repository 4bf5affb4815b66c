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
use crate::tx::{Authorization, Transaction, TxBody, batch_member_proof, verify_batch_member};

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

/// Verifies a chain export from genesis against the trust roots. The report
/// has one fact per block (and the first failure in it) and a summary.
pub fn verify_export(export: &ChainExport, roots: &TrustRoots) -> Report {
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
    let mut prev: Option<CertifiedHeader> = None;
    let mut txs_total = 0u64;
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
        if let Err(e) = verify_certificate(h, &ch.certificate, trust) {
            fail(&mut r, "header.certificate", e.to_string());
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
            match hex::decode(t)
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
        // Authors: self-signed, or batch members under a seal in this block.
        let mut batches: BTreeMap<Hash, Vec<Transaction>> = BTreeMap::new();
        let mut seals: BTreeMap<Hash, Transaction> = BTreeMap::new();
        for (_, tx) in &txs {
            match (&tx.auth, &tx.body) {
                (Authorization::Batched { root, .. }, _) => {
                    batches.entry(*root).or_default().push(tx.clone())
                }
                (Authorization::Signed(_), TxBody::BatchSeal { root, .. }) => {
                    seals.insert(*root, tx.clone());
                }
                _ => {}
            }
        }
        for (j, (_, tx)) in txs.iter().enumerate() {
            let ok = match &tx.auth {
                Authorization::Signed(_) => tx.verify_author(roots).map_err(|e| e.to_string()),
                Authorization::Batched { root, index } => {
                    match (seals.get(root), batches.get(root)) {
                        (Some(seal), Some(members)) => tx
                            .verify_role(roots)
                            .map_err(|e| e.to_string())
                            .and_then(|_| seal.verify_author(roots).map_err(|e| e.to_string()))
                            .and_then(|_| {
                                let mut ordered = members.clone();
                                ordered.sort_by_key(|m| match m.auth {
                                    Authorization::Batched { index, .. } => index,
                                    _ => u32::MAX,
                                });
                                if *index as usize >= ordered.len() {
                                    return Err(format!(
                                        "batch index {index} beyond its {} members",
                                        ordered.len()
                                    ));
                                }
                                let proof = batch_member_proof(&ordered, *index as usize);
                                verify_batch_member(tx, seal, &proof).map_err(|e| e.to_string())
                            }),
                        _ => Err("a batch member whose seal is not in its block".into()),
                    }
                }
            };
            if let Err(e) = ok {
                fail(&mut r, "tx.author", format!("transaction {j}: {e}"));
                return r;
            }
        }
        txs_total += txs.len() as u64;
        prev = Some(ch);
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
