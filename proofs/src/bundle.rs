//! Proof bundles and evidence packages, and their verification.
//!
//! A [`ProofBundle`] proves that one signed transaction is in a block of a chain:
//! the certified header, the transaction bytes and the inclusion proof to the
//! header's tx root. An [`EvidencePackage`] gathers bundles and the field
//! disclosures that open their record commitments, under one registry hash.
//! [`verify_bundle`] and [`verify_package`] take the trust roots and `now` as
//! arguments and return a [`Report`].

use serde::{Deserialize, Serialize};

use crate::commitment::{FieldDisclosure, MAX_FIELD_NAME, verify_disclosure};
use crate::encoding::{DecodeError, Decoder, Encoder};
use crate::hash::Hash;
use crate::header::{CertError, Certificate, CertifiedHeader, Header, verify_certificate};
use crate::merkle::{InclusionProof, MerkleError, leaf_hash, verify_inclusion};
use crate::report::Report;
use crate::trust::TrustRoots;
use crate::tx::{Authorization, MAX_TX_BYTES, Transaction, TxBody, TxError, verify_batch_member};
use crate::value::Value;

/// Domain tag of a bundle.
pub const BUNDLE_DOMAIN: &str = "tongban/bundle/v1";
/// Domain tag of an evidence package.
pub const PACKAGE_DOMAIN: &str = "tongban/evidence/v1";
/// The evidence package format this crate writes and reads.
pub const PACKAGE_FORMAT: u16 = 1;
/// Longest Merkle path accepted (a tree of 2^64 leaves has 64 levels).
pub const MAX_PATH: usize = 64;
/// Most bundles (and most disclosures) in one package.
pub const MAX_ITEMS: usize = 4096;

/// A transaction with the proof that it is in a certified block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// The block's header and certificate.
    pub header: CertifiedHeader,
    /// The transaction's canonical bytes (the Merkle leaf data).
    #[serde(with = "crate::hash::hex_bytes")]
    pub tx: Vec<u8>,
    /// Inclusion proof of the transaction in the header's tx root.
    pub proof: InclusionProof,
    /// For a batch member: the seal's own bundle and the member's path in the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Box<BatchEvidence>>,
}

/// What proves a batched transaction's authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEvidence {
    /// The bundle of the batch seal (itself self-signed; never batched).
    pub seal: ProofBundle,
    /// The member's place under the seal's root.
    pub member: InclusionProof,
}

fn write_proof(e: &mut Encoder, p: &InclusionProof) {
    e.u64(p.index).u64(p.size).count(p.path.len());
    for h in &p.path {
        e.raw(&h.0);
    }
}

fn read_proof(d: &mut Decoder<'_>) -> Result<InclusionProof, DecodeError> {
    let index = d.u64("proof.index")?;
    let size = d.u64("proof.size")?;
    let n = d.count("proof.path", MAX_PATH, 32)?;
    let mut path = Vec::with_capacity(n);
    for _ in 0..n {
        path.push(Hash(d.array("proof.path")?));
    }
    Ok(InclusionProof { index, size, path })
}

impl ProofBundle {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(BUNDLE_DOMAIN);
        self.write_fields(&mut e);
        e.finish()
    }
    fn write_fields(&self, e: &mut Encoder) {
        self.header.header.write(e);
        self.header.certificate.write(e);
        e.bytes(&self.tx);
        write_proof(e, &self.proof);
        match &self.batch {
            None => {
                e.u8(0);
            }
            Some(b) => {
                e.u8(1);
                b.seal.write_fields(e);
                write_proof(e, &b.member);
            }
        }
    }
    fn read_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Self::read_nested(d, true)
    }
    fn read_nested(d: &mut Decoder<'_>, allow_batch: bool) -> Result<Self, DecodeError> {
        let header = Header::read(d)?;
        let certificate = Certificate::read(d)?;
        let tx = d.bytes("bundle.tx", MAX_TX_BYTES)?.to_vec();
        let proof = read_proof(d)?;
        let batch = match d.u8("bundle.batch")? {
            0 => None,
            // A seal is self-signed: its bundle never nests another batch.
            1 if allow_batch => {
                let seal = Self::read_nested(d, false)?;
                let member = read_proof(d)?;
                Some(Box::new(BatchEvidence { seal, member }))
            }
            v => {
                return Err(DecodeError::UnknownTag {
                    field: "bundle.batch",
                    value: u64::from(v),
                });
            }
        };
        Ok(ProofBundle {
            header: CertifiedHeader {
                header,
                certificate,
            },
            tx,
            proof,
            batch,
        })
    }
    /// Decodes canonical bytes; refuses trailing bytes and oversized fields.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        d.domain(BUNDLE_DOMAIN)?;
        let b = Self::read_fields(&mut d)?;
        d.finish()?;
        Ok(b)
    }
    /// Builds a bundle for `tx`, checking nothing (the producer's side).
    pub fn new(header: CertifiedHeader, tx: &Transaction, proof: InclusionProof) -> Self {
        ProofBundle {
            header,
            tx: tx.encode(),
            proof,
            batch: None,
        }
    }
    /// Attaches the seal's bundle and the member path (for a batched transaction).
    pub fn with_batch(mut self, seal: ProofBundle, member: InclusionProof) -> Self {
        self.batch = Some(Box::new(BatchEvidence { seal, member }));
        self
    }
}

fn cert_code(e: &CertError) -> &'static str {
    match e {
        CertError::WrongChain { .. } => "certificate.wrong_chain",
        CertError::UnknownSigner { .. } => "certificate.unknown_signer",
        CertError::DuplicateSigner { .. } => "certificate.duplicate_signer",
        CertError::Unordered { .. } => "certificate.unordered",
        CertError::BadSignature { .. } => "certificate.bad_signature",
        CertError::BelowThreshold { .. } => "certificate.below_threshold",
    }
}

fn merkle_code(e: &MerkleError) -> &'static str {
    match e {
        MerkleError::HashLength { .. } => "merkle.hash_length",
        MerkleError::EmptyTree => "merkle.empty_tree",
        MerkleError::IndexOutOfRange { .. } => "merkle.index_out_of_range",
        MerkleError::PathLength { .. } => "merkle.path_length",
        MerkleError::RootMismatch { .. } => "merkle.root_mismatch",
        MerkleError::SizeOrder { .. } => "merkle.size_order",
        MerkleError::FromEmpty => "merkle.from_empty",
        MerkleError::EqualSizes => "merkle.equal_sizes",
    }
}

fn merkle_expected_found(e: &MerkleError) -> (String, String) {
    match e {
        MerkleError::RootMismatch { expected, computed } => (expected.clone(), computed.clone()),
        MerkleError::PathLength { expected, found } => {
            (format!("{expected} path hashes"), format!("{found}"))
        }
        MerkleError::IndexOutOfRange { index, size } => {
            (format!("index < {size}"), format!("{index}"))
        }
        other => ("a valid proof".into(), other.to_string()),
    }
}

/// Verifies one bundle against the trust roots at time `now_ms`, appending its
/// facts to `report` under the name `subject`. Returns the transaction only if
/// every fact about it holds.
pub fn verify_bundle(
    bundle: &ProofBundle,
    roots: &TrustRoots,
    now_ms: u64,
    subject: &str,
    report: &mut Report,
) -> Option<Transaction> {
    verify_bundle_with(bundle, roots, now_ms, subject, report, &|_| false)
}

/// [`verify_bundle`], except that a certified header (header and certificate,
/// byte for byte) for which `certified` is true is taken as verified — the
/// caller verified that very certificate before (a light client stores
/// headers only after verifying them) — and is not verified again. The
/// report says so.
pub fn verify_bundle_with(
    bundle: &ProofBundle,
    roots: &TrustRoots,
    now_ms: u64,
    subject: &str,
    report: &mut Report,
    certified: &dyn Fn(&CertifiedHeader) -> bool,
) -> Option<Transaction> {
    let h = &bundle.header.header;
    let later = [
        "header.time",
        "proof.size",
        "tx.inclusion",
        "tx.decode",
        "tx.chain",
        "tx.author",
    ];
    let skip_rest = |report: &mut Report, from: usize, because: &str| {
        for check in &later[from..] {
            report.skipped(subject, check, because);
        }
    };
    let Some(chain) = roots.chains.get(&h.chain_id) else {
        let known: Vec<&str> = roots.chains.keys().map(String::as_str).collect();
        report.fails(
            subject,
            "chain.known",
            "chain.unknown",
            "the header's chain is not in the registry",
            known.join(", "),
            &h.chain_id,
        );
        report.skipped(subject, "header.certificate", "chain.known failed");
        skip_rest(report, 0, "chain.known failed");
        return None;
    };
    report.holds(
        subject,
        "chain.known",
        format!("chain `{}` is in the registry", h.chain_id),
    );

    if certified(&bundle.header) {
        report.holds(
            subject,
            "header.certificate",
            format!(
                "header {} at height {} was verified before and is held by the light client",
                h.hash(),
                h.height
            ),
        );
    } else if let Err(e) = verify_certificate(h, &bundle.header.certificate, chain) {
        let (expected, found) = match &e {
            CertError::BelowThreshold { expected, found } => {
                (format!("{expected} distinct endorsers"), format!("{found}"))
            }
            CertError::WrongChain { expected, found } => (expected.clone(), found.clone()),
            other => (
                "valid signatures by distinct endorsers in increasing order".into(),
                other.to_string(),
            ),
        };
        report.fails(
            subject,
            "header.certificate",
            cert_code(&e),
            e.to_string(),
            expected,
            found,
        );
        skip_rest(report, 0, "header.certificate failed");
        return None;
    } else {
        report.holds(
            subject,
            "header.certificate",
            format!(
                "header {} at height {} endorsed by {} of {} endorsers (threshold {})",
                h.hash(),
                h.height,
                bundle.header.certificate.endorsements.len(),
                chain.endorsers().len(),
                chain.threshold()
            ),
        );
    }

    let limit = now_ms.saturating_add(roots.max_clock_skew_ms);
    if h.timestamp_ms > limit {
        report.fails(
            subject,
            "header.time",
            "header.from_future",
            "the header is dated after now plus the allowed clock skew",
            format!("timestamp ≤ {limit}"),
            h.timestamp_ms.to_string(),
        );
        skip_rest(report, 1, "header.time failed");
        return None;
    }
    report.holds(
        subject,
        "header.time",
        format!("timestamp {} is not in the future", h.timestamp_ms),
    );

    if bundle.proof.size != h.tx_count {
        report.fails(
            subject,
            "proof.size",
            "proof.size_mismatch",
            "the proof's tree size is not the header's transaction count",
            h.tx_count.to_string(),
            bundle.proof.size.to_string(),
        );
        skip_rest(report, 2, "proof.size failed");
        return None;
    }
    report.holds(
        subject,
        "proof.size",
        format!("tree of {} transactions", h.tx_count),
    );

    let leaf = leaf_hash(&bundle.tx);
    if let Err(e) = verify_inclusion(&leaf.0, &bundle.proof, &h.tx_root.0) {
        let (expected, found) = merkle_expected_found(&e);
        report.fails(
            subject,
            "tx.inclusion",
            merkle_code(&e),
            e.to_string(),
            expected,
            found,
        );
        skip_rest(report, 3, "tx.inclusion failed");
        return None;
    }
    report.holds(
        subject,
        "tx.inclusion",
        format!(
            "transaction {leaf} is leaf {} of tx root {}",
            bundle.proof.index, h.tx_root
        ),
    );

    let tx = match Transaction::decode(&bundle.tx) {
        Ok(tx) => tx,
        Err(e) => {
            report.fails(
                subject,
                "tx.decode",
                "tx.malformed",
                e.to_string(),
                "a canonical transaction",
                format!("{} bytes", bundle.tx.len()),
            );
            skip_rest(report, 4, "tx.decode failed");
            return None;
        }
    };
    report.holds(
        subject,
        "tx.decode",
        format!("{} by `{}`", kind_name(&tx.body), tx.author),
    );

    if tx.chain_id != h.chain_id {
        report.fails(
            subject,
            "tx.chain",
            "tx.wrong_chain",
            "the transaction names another chain than its block",
            &h.chain_id,
            &tx.chain_id,
        );
        skip_rest(report, 5, "tx.chain failed");
        return None;
    }
    report.holds(
        subject,
        "tx.chain",
        format!("written for chain `{}`", tx.chain_id),
    );

    let tx_code = |e: &TxError| match e {
        TxError::UnknownAuthor(_) => "tx.unknown_author",
        TxError::Role { .. } => "tx.author_role",
        TxError::Signature(_) => "tx.bad_signature",
        TxError::Chain { .. } => "tx.wrong_chain",
        TxError::NeedsBatch => "tx.needs_batch",
        TxError::ForeignChain { .. } => "tx.foreign_author",
        TxError::NotOwner { .. } => "tx.not_owner",
    };
    match (&tx.auth, &bundle.batch) {
        (Authorization::Signed(_), None) => {
            if let Err(e) = tx.verify_author(roots) {
                report.fails(
                    subject,
                    "tx.author",
                    tx_code(&e),
                    e.to_string(),
                    "a registry member of the right role whose key signed it",
                    &tx.author,
                );
                return None;
            }
            report.holds(
                subject,
                "tx.author",
                format!("signed by registry member `{}`", tx.author),
            );
        }
        (Authorization::Signed(_), Some(_)) => {
            report.fails(
                subject,
                "tx.author",
                "tx.unexpected_batch",
                "a self-signed transaction came with batch evidence",
                "no batch evidence",
                "batch evidence",
            );
            return None;
        }
        (Authorization::Batched { .. }, None) => {
            report.fails(
                subject,
                "tx.author",
                "tx.needs_batch",
                "the transaction is a batch member but its seal is missing",
                "the seal's bundle and the member path",
                "nothing",
            );
            return None;
        }
        (Authorization::Batched { .. }, Some(b)) => {
            if let Err(e) = tx.verify_role(roots) {
                report.fails(
                    subject,
                    "tx.author",
                    tx_code(&e),
                    e.to_string(),
                    "a registry member of the right role",
                    &tx.author,
                );
                return None;
            }
            let seal_subject = format!("{subject}.seal");
            let Some(seal) = verify_bundle(&b.seal, roots, now_ms, &seal_subject, report) else {
                report.skipped(
                    subject,
                    "tx.author",
                    format!("{seal_subject} did not verify"),
                );
                return None;
            };
            if let Err(e) = verify_batch_member(&tx, &seal, &b.member) {
                report.fails(
                    subject,
                    "tx.author",
                    "tx.batch_mismatch",
                    e.to_string(),
                    "a place in the batch the seal signs",
                    &tx.author,
                );
                return None;
            }
            report.holds(
                subject,
                "tx.author",
                format!(
                    "member {} of a batch of {} sealed by registry member `{}`",
                    b.member.index, b.member.size, tx.author
                ),
            );
        }
    }
    Some(tx)
}

fn kind_name(b: &TxBody) -> &'static str {
    b.kind_name()
}

/// A field disclosure tied to the bundle whose record commitment it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundDisclosure {
    /// Index into the package's bundles.
    pub bundle: u32,
    /// The disclosed field.
    pub field: FieldDisclosure,
}

/// Everything needed to check a set of facts offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidencePackage {
    /// Format version ([`PACKAGE_FORMAT`]).
    pub format: u16,
    /// SHA-256 of the registry the evidence is checked against.
    pub registry_hash: Hash,
    /// Proofs of transactions.
    pub bundles: Vec<ProofBundle>,
    /// Fields opened against record commitments in those bundles.
    pub disclosures: Vec<BoundDisclosure>,
}

impl EvidencePackage {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_domain(PACKAGE_DOMAIN);
        e.u16(self.format)
            .raw(&self.registry_hash.0)
            .count(self.bundles.len());
        for b in &self.bundles {
            b.write_fields(&mut e);
        }
        e.count(self.disclosures.len());
        for d in &self.disclosures {
            e.u32(d.bundle).str(&d.field.name);
            d.field.value.encode(&mut e);
            e.raw(&d.field.salt);
            write_proof(&mut e, &d.field.proof);
        }
        e.finish()
    }
    /// Decodes canonical bytes with every count and length bounded before allocation.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        d.domain(PACKAGE_DOMAIN)?;
        let format = d.u16("package.format")?;
        if format != PACKAGE_FORMAT {
            return Err(DecodeError::UnknownTag {
                field: "package.format",
                value: u64::from(format),
            });
        }
        let registry_hash = Hash(d.array("package.registry_hash")?);
        // A bundle is at least a header (~120 bytes) plus counts; 64 is a safe lower bound.
        let n = d.count("package.bundles", MAX_ITEMS, 64)?;
        let mut bundles = Vec::with_capacity(n);
        for _ in 0..n {
            bundles.push(ProofBundle::read_fields(&mut d)?);
        }
        // Smallest disclosure: u32 + str(1 byte) + bool value + salt + index + size + empty path = 63 bytes.
        let n = d.count("package.disclosures", MAX_ITEMS, 63)?;
        let mut disclosures = Vec::with_capacity(n);
        for _ in 0..n {
            let bundle = d.u32("disclosure.bundle")?;
            let name = d.str("disclosure.name", MAX_FIELD_NAME)?.to_owned();
            let value = Value::decode(&mut d)?;
            let salt = d.array("disclosure.salt")?;
            let proof = read_proof(&mut d)?;
            disclosures.push(BoundDisclosure {
                bundle,
                field: FieldDisclosure {
                    name,
                    value,
                    salt,
                    proof,
                },
            });
        }
        d.finish()?;
        Ok(EvidencePackage {
            format,
            registry_hash,
            bundles,
            disclosures,
        })
    }
}

/// Verifies a package with only the trust roots and the time: the registry hash,
/// every bundle, and every disclosure against the commitment it names.
pub fn verify_package(pkg: &EvidencePackage, roots: &TrustRoots, now_ms: u64) -> Report {
    let mut report = Report::new();
    if pkg.format != PACKAGE_FORMAT {
        report.fails(
            "package",
            "package.format",
            "package.format",
            "unknown package format",
            PACKAGE_FORMAT.to_string(),
            pkg.format.to_string(),
        );
        return report;
    }
    report.holds(
        "package",
        "package.format",
        format!("format {PACKAGE_FORMAT}"),
    );
    if pkg.registry_hash != roots.registry_hash {
        report.fails(
            "package",
            "package.registry",
            "package.registry_mismatch",
            "the package was made under another registry than the one trusted",
            roots.registry_hash.to_hex(),
            pkg.registry_hash.to_hex(),
        );
        return report;
    }
    report.holds(
        "package",
        "package.registry",
        format!("made under registry {}", roots.registry_hash),
    );
    if pkg.bundles.is_empty() {
        report.fails(
            "package",
            "package.bundles",
            "package.empty",
            "a package must prove at least one transaction",
            "≥ 1 bundle",
            "0",
        );
    }

    let txs: Vec<Option<Transaction>> = pkg
        .bundles
        .iter()
        .enumerate()
        .map(|(i, b)| verify_bundle(b, roots, now_ms, &format!("bundle[{i}]"), &mut report))
        .collect();

    for (i, d) in pkg.disclosures.iter().enumerate() {
        let subject = format!("disclosure[{i}]");
        let Some(slot) = txs.get(d.bundle as usize) else {
            report.fails(
                &subject,
                "disclosure.bundle",
                "disclosure.no_bundle",
                "names a bundle the package does not have",
                format!("< {}", txs.len()),
                d.bundle.to_string(),
            );
            continue;
        };
        let Some(tx) = slot else {
            report.skipped(
                &subject,
                "disclosure.opens",
                format!("bundle[{}] did not verify", d.bundle),
            );
            continue;
        };
        let TxBody::RecordCommit {
            commitment,
            record_type,
            record_id,
            version,
            ..
        } = &tx.body
        else {
            report.fails(
                &subject,
                "disclosure.opens",
                "disclosure.not_a_record",
                "the bundle's transaction is not a record commitment",
                "record commitment",
                kind_name(&tx.body),
            );
            continue;
        };
        match verify_disclosure(commitment, &d.field) {
            Ok(()) => report.holds(
                &subject,
                "disclosure.opens",
                format!(
                    "field `{}` = {} of {record_type} `{record_id}` v{version} (bundle[{}])",
                    d.field.name, d.field.value, d.bundle
                ),
            ),
            Err(e) => report.fails(
                &subject,
                "disclosure.opens",
                "disclosure.mismatch",
                e.to_string(),
                commitment.to_hex(),
                format!("field `{}`", d.field.name),
            ),
        }
    }
    report
}
