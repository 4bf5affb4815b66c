//! The client side of `tongban`: a department's record commands and proof
//! checks, signing every request with the member's key file.

// Printing results is this module's job.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hmac::{KeyInit, Mac};
use proofs::SigningKey;
use proofs::subject::SubjectKey;
use regions::Registry;
use serde::Deserialize;

use crate::api::records::{BatchResult, DisclosureView, RecordView, WriteResult};
use crate::client::{Client, ClientError, sign_publication};
use crate::clock::{Clock, SystemClock};
use crate::keyfile;
use crate::records::{RecordInput, RevokeRequest};

/// Who is calling which gateway.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        env = "TONGBAN_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway: String,
    /// The registry file (for ids, record types and trust roots).
    #[arg(long, env = "TONGBAN_REGISTRY")]
    pub registry: PathBuf,
    /// The member's Ed25519 key file (its `id` names the member).
    #[arg(long, env = "TONGBAN_KEY")]
    pub key: PathBuf,
    /// The city's subject-reference key file (departments publishing records).
    #[arg(long, env = "TONGBAN_SUBJECT_KEY")]
    pub subject_key: Option<PathBuf>,
}

/// Record commands.
#[derive(Subcommand, Debug)]
pub enum RecordsCommand {
    /// Publish one record version from a JSON file (`-` for stdin):
    /// `{"record_type", "record_id", "version", "fields": {...}, "issued_ms"}`.
    Publish {
        /// The record file.
        file: PathBuf,
    },
    /// Read a record back (owner only): every version with values and status.
    Get {
        /// Record type.
        record_type: String,
        /// Record id.
        record_id: String,
    },
    /// Revoke one version of a record.
    Revoke {
        /// Record type.
        record_type: String,
        /// Record id.
        record_id: String,
        /// The version to revoke.
        #[arg(long)]
        version: u32,
        /// Why: `revoked` or `superseded`.
        #[arg(long, default_value = "revoked")]
        reason: String,
    },
    /// Fetch one field with its proof and verify it locally.
    Disclose {
        /// Record type.
        record_type: String,
        /// Record id.
        record_id: String,
        /// Version.
        version: u32,
        /// Field name.
        field: String,
    },
    /// Back-fill existing licences from a JSON-lines file (one record per line),
    /// in batches signed once each; resumable (progress kept in FILE.progress).
    Import {
        /// The JSON-lines file.
        file: PathBuf,
        /// Records per batch.
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        /// Ignore the progress file and start from the first line.
        #[arg(long)]
        restart: bool,
    },
    /// Every access to a subject's data (for a department that keeps records of
    /// the subject). The identifier is read from a file or the first line of
    /// stdin, never from the command line.
    AccessLedger {
        /// Where to read the subject's identifier (`-`: stdin).
        #[arg(long, default_value = "-")]
        subject_from: PathBuf,
    },
}

/// A loaded client identity.
pub struct Identity {
    /// The registry.
    pub registry: Registry,
    /// Its hash.
    pub registry_hash: proofs::Hash,
    /// The member id.
    pub member: String,
    /// Its key.
    pub key: SigningKey,
    /// The member's city chain id.
    pub chain_id: String,
    /// The signing client.
    pub client: Client,
}

impl Identity {
    /// Loads the registry and key file and builds the client for the member's city gateway.
    pub fn load(a: &ClientArgs) -> anyhow::Result<Self> {
        let (registry, registry_hash) = regions::load(&a.registry)
            .with_context(|| format!("registry {}", a.registry.display()))?;
        registry.validate().context("registry")?;
        let (member, key) = keyfile::read_signing(&a.key)?;
        let m = registry
            .member(&member)
            .with_context(|| format!("key file names `{member}`, which is not in the registry"))?;
        if m.signing_key() != key.public().to_hex() {
            bail!(
                "the key in {} is not the registry's key for `{member}`",
                a.key.display()
            );
        }
        let city = registry.city(m.city()).context("member's city")?;
        let chain_id = city.chain.chain_id.clone();
        let client = Client::new(&a.gateway, &member, key.clone(), &city.gateway.id);
        Ok(Identity {
            registry,
            registry_hash,
            member,
            key,
            chain_id,
            client,
        })
    }
    fn subject_key(a: &ClientArgs) -> anyhow::Result<SubjectKey> {
        let p = a
            .subject_key
            .as_ref()
            .context("--subject-key (or TONGBAN_SUBJECT_KEY) is needed to publish records")?;
        Ok(keyfile::read_subject(p)?.1)
    }
}

/// The record secret for a record: derived from the member's key and the
/// record's content, so a resent record commits identically (and is recognised
/// as a duplicate) while nobody without the key can predict it.
pub fn record_secret(key: &SigningKey, r: &RecordInput) -> [u8; 32] {
    let mut e = proofs::encoding::Encoder::with_domain("tongban/record-secret/v1");
    e.str(&r.record_type)
        .str(&r.record_id)
        .u32(r.version)
        .u64(r.issued_ms);
    e.raw(&proofs::hash::sha256(&serde_json::to_vec(&r.fields).unwrap_or_default()).0);
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key.to_seed())
        .unwrap_or_else(|_| unreachable!());
    mac.update(e.as_bytes());
    mac.finalize().into_bytes().into()
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// The most `inspect verify` reads of one package (64 MiB).
pub const MAX_PACKAGE_BYTES: u64 = 64 << 20;
/// The default bound of `inspect chain` on an export (1 GiB).
pub const MAX_EXPORT_BYTES: u64 = 1 << 30;

/// Reads at most `limit` bytes of `file` (`-`: standard input) as UTF-8 text.
/// A file whose size is above the bound is refused before anything is read;
/// standard input is read up to `limit + 1` bytes and refused if there are
/// more. The error names the input and the bound.
pub fn read_bounded(file: &Path, limit: u64, what: &str) -> anyhow::Result<String> {
    let name = if file == Path::new("-") {
        "standard input".to_owned()
    } else {
        file.display().to_string()
    };
    let too_large = || {
        anyhow::anyhow!(
            "{name}: {what} larger than {limit} bytes ({}): refused without reading the rest",
            human_bytes(limit)
        )
    };
    let mut buf = Vec::new();
    if file == Path::new("-") {
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::io::stdin().lock(), limit.saturating_add(1)),
            &mut buf,
        )
        .with_context(|| format!("reading {name}"))?;
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("reading {name}"))?;
        let len = f
            .metadata()
            .with_context(|| format!("reading {name}"))?
            .len();
        if len > limit {
            return Err(too_large());
        }
        std::io::Read::read_to_end(
            &mut std::io::Read::take(f, limit.saturating_add(1)),
            &mut buf,
        )
        .with_context(|| format!("reading {name}"))?;
    }
    if buf.len() as u64 > limit {
        return Err(too_large());
    }
    String::from_utf8(buf).map_err(|e| {
        anyhow::anyhow!(
            "{name}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

fn read_input(file: &Path) -> anyhow::Result<String> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// Runs a record command.
pub async fn records(a: ClientArgs, cmd: RecordsCommand) -> anyhow::Result<std::process::ExitCode> {
    let id = Identity::load(&a)?;
    match cmd {
        RecordsCommand::Publish { file } => {
            let text = read_input(&file)?;
            let input: RecordInput = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a record", file.display()))?;
            let sk = Identity::subject_key(&a)?;
            let secret = record_secret(&id.key, &input);
            let req = sign_publication(
                &id.registry,
                &id.chain_id,
                &id.member,
                &id.key,
                &sk,
                input,
                secret,
            )?;
            let (status, res): (u16, WriteResult) = id.client.post("/v1/records", &req).await?;
            print_json(&res)?;
            Ok(if status < 300 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        RecordsCommand::AccessLedger { subject_from } => {
            let subject = read_input(&subject_from)?;
            let subject = subject.lines().next().unwrap_or("").trim().to_owned();
            anyhow::ensure!(!subject.is_empty(), "no subject identifier given");
            let (_, v): (u16, serde_json::Value) = id
                .client
                .post(
                    "/v1/access-ledger",
                    &serde_json::json!({ "subject": subject }),
                )
                .await?;
            print_json(&v)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        RecordsCommand::Get {
            record_type,
            record_id,
        } => {
            let v: RecordView = id
                .client
                .get(&format!(
                    "/v1/records/{}/{}",
                    enc(&record_type),
                    enc(&record_id)
                ))
                .await?;
            print_json(&v)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        RecordsCommand::Revoke {
            record_type,
            record_id,
            version,
            reason,
        } => {
            let reason = match reason.as_str() {
                "revoked" => proofs::tx::RevokeReason::Revoked,
                "superseded" => proofs::tx::RevokeReason::Superseded,
                other => bail!("--reason must be `revoked` or `superseded`, not `{other}`"),
            };
            let mut req = RevokeRequest {
                record_type,
                record_id,
                version,
                reason,
                at_ms: SystemClock.now_ms(),
                signature: String::new(),
            };
            let (_, _, sb) =
                crate::records::revocation(&id.registry, &id.chain_id, &id.member, &req)?;
            req.signature = hex::encode(id.key.sign(&sb).0);
            let (status, res): (u16, WriteResult) =
                id.client.post("/v1/records/revoke", &req).await?;
            print_json(&res)?;
            Ok(if status < 300 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        RecordsCommand::Disclose {
            record_type,
            record_id,
            version,
            field,
        } => {
            let v: DisclosureView = id
                .client
                .get(&format!(
                    "/v1/records/{}/{}/versions/{version}/fields/{}",
                    enc(&record_type),
                    enc(&record_id),
                    enc(&field)
                ))
                .await?;
            let roots = id.registry.trust_roots(id.registry_hash)?;
            let pkg = proofs::EvidencePackage {
                format: proofs::bundle::PACKAGE_FORMAT,
                registry_hash: id.registry_hash,
                bundles: vec![v.bundle],
                disclosures: vec![proofs::bundle::BoundDisclosure {
                    bundle: 0,
                    field: v.disclosure,
                }],
            };
            let report = proofs::verify_package(&pkg, &roots, SystemClock.now_ms());
            print!("{report}");
            Ok(if report.ok() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        RecordsCommand::Import {
            file,
            batch,
            restart,
        } => {
            let sk = Identity::subject_key(&a)?;
            import(&id, &sk, &file, batch, restart).await
        }
    }
}

fn enc(s: &str) -> String {
    // Path segments: percent-encode everything but unreserved characters.
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `tongban proof LEAF`: fetch and verify a transaction's bundle.
pub async fn proof(a: ClientArgs, leaf: &str) -> anyhow::Result<std::process::ExitCode> {
    let id = Identity::load(&a)?;
    let bundle: proofs::ProofBundle = id.client.get(&format!("/v1/proofs/{leaf}")).await?;
    let roots = id.registry.trust_roots(id.registry_hash)?;
    let mut report = proofs::Report::new();
    proofs::verify_bundle(&bundle, &roots, SystemClock.now_ms(), "bundle", &mut report);
    print!("{report}");
    Ok(if report.ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// One line of an import file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    record_type: String,
    record_id: String,
    #[serde(default = "one")]
    version: u32,
    fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    issued_ms: u64,
}

fn one() -> u32 {
    1
}

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportSummary {
    /// Records written.
    pub imported: u64,
    /// Records already on the chain (identical), skipped.
    pub skipped_duplicate: u64,
    /// Records refused, by line number (1-based) with the reason.
    pub rejected: BTreeMap<u64, String>,
    /// Lines skipped because an earlier run had finished them.
    pub resumed_after_line: u64,
}

async fn import(
    id: &Identity,
    sk: &SubjectKey,
    file: &Path,
    batch: usize,
    restart: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let batch = batch.clamp(1, crate::api::records::MAX_BATCH_RECORDS);
    let progress_path = PathBuf::from(format!("{}.progress", file.display()));
    let done: u64 = if restart {
        0
    } else {
        std::fs::read_to_string(&progress_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let total = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    )
    .lines()
    .count() as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(done);
    let mut summary = ImportSummary {
        resumed_after_line: done,
        ..Default::default()
    };
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let mut pending: Vec<(u64, RecordInput)> = Vec::with_capacity(batch);
    let mut inflight: Option<InFlight> = None;
    let mut line_no = 0u64;
    for line in reader.lines() {
        line_no += 1;
        let line = line?;
        if line_no <= done {
            continue;
        }
        if line.trim().is_empty() {
            bar.inc(1);
            continue;
        }
        match serde_json::from_str::<ImportLine>(&line) {
            Ok(l) => pending.push((
                line_no,
                RecordInput {
                    record_type: l.record_type,
                    record_id: l.record_id,
                    version: l.version,
                    fields: l.fields,
                    issued_ms: l.issued_ms,
                },
            )),
            Err(e) => {
                summary
                    .rejected
                    .insert(line_no, format!("not a record: {e}"));
                bar.inc(1);
            }
        }
        if pending.len() >= batch {
            // The next batch is prepared while the previous one is in flight
            // (one at a time, in order, so the progress mark only ever covers
            // lines whose batch was answered).
            let next = prepare_batch(id, sk, std::mem::take(&mut pending), &mut summary, &bar);
            if let Some(f) = inflight.take() {
                land(id, sk, f, &mut summary, &bar, &progress_path).await?;
            }
            match next {
                Some(p) => {
                    inflight = Some((tokio::spawn(post_batch(id.client.clone(), p)), line_no));
                }
                None => write_progress(&progress_path, line_no)?,
            }
        }
    }
    if let Some(f) = inflight.take() {
        land(id, sk, f, &mut summary, &bar, &progress_path).await?;
    }
    if !pending.is_empty() {
        send_batch(id, sk, pending, &mut summary, &bar).await?;
    }
    write_progress(&progress_path, line_no)?;
    bar.finish_and_clear();
    print_json(&summary)?;
    eprintln!(
        "imported {}, skipped as duplicate {}, rejected {} (lines: {})",
        summary.imported,
        summary.skipped_duplicate,
        summary.rejected.len(),
        summary
            .rejected
            .keys()
            .take(20)
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(std::process::ExitCode::SUCCESS)
}

fn write_progress(path: &Path, line: u64) -> anyhow::Result<()> {
    let tmp = path.with_extension("progress.tmp");
    std::fs::write(&tmp, format!("{line}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Sends one batch; members the gateway refuses are reported and the rest resent.
/// A batch signed and sealed, ready to post: its request and its good records.
struct Prepared {
    req: crate::records::ImportRequest,
    good: Vec<(u64, RecordInput)>,
}

/// Prepares each record once (the check that the registry allows it, and the
/// leaf its batch seal covers) and seals the batch; refusals go to `summary`.
fn prepare_batch(
    id: &Identity,
    sk: &SubjectKey,
    recs: Vec<(u64, RecordInput)>,
    summary: &mut ImportSummary,
    bar: &indicatif::ProgressBar,
) -> Option<Prepared> {
    let mut good = Vec::with_capacity(recs.len());
    let mut items = Vec::with_capacity(recs.len());
    for (line, r) in recs {
        let secret = record_secret(&id.key, &r);
        match crate::records::prepare(&id.registry, &id.chain_id, &id.member, &r, secret, sk) {
            Ok(p) => {
                items.push((
                    r.clone(),
                    secret,
                    proofs::merkle::leaf_hash(&p.signing_bytes),
                ));
                good.push((line, r));
            }
            Err(e) => {
                summary.rejected.insert(line, e.to_string());
                bar.inc(1);
            }
        }
    }
    if good.is_empty() {
        return None;
    }
    let req = crate::client::seal_import(&id.chain_id, &id.member, &id.key, items);
    Some(Prepared { req, good })
}

/// Posts a prepared batch (retrying while the gateway answers 503).
async fn post_batch(client: Client, p: Prepared) -> anyhow::Result<(Prepared, BatchResult)> {
    loop {
        match client
            .post::<_, BatchResult>("/v1/records/import", &p.req)
            .await
        {
            Ok((_, r)) => return Ok((p, r)),
            Err(ClientError::Api { status: 503, .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Counts a batch's answers; returns the records to send again (a batch the
/// gateway aborted because of another record in it).
fn apply_results(
    good: Vec<(u64, RecordInput)>,
    res: BatchResult,
    summary: &mut ImportSummary,
    bar: &indicatif::ProgressBar,
) -> Vec<(u64, RecordInput)> {
    let mut retry = Vec::new();
    for ((line, r), w) in good.into_iter().zip(res.results) {
        match (w.outcome.as_str(), w.code.as_deref()) {
            ("written", _) => {
                summary.imported += 1;
                bar.inc(1);
            }
            ("duplicate", _) | ("rejected", Some("batch.contains_duplicate")) => {
                summary.skipped_duplicate += 1;
                bar.inc(1);
            }
            ("rejected", Some("batch.aborted")) => retry.push((line, r)),
            _ => {
                summary.rejected.insert(
                    line,
                    format!(
                        "{}: {}",
                        w.code.unwrap_or_default(),
                        w.message.unwrap_or_default()
                    ),
                );
                bar.inc(1);
            }
        }
    }
    retry
}

/// Sends one batch and waits for it (and for any retry it needs).
async fn send_batch(
    id: &Identity,
    sk: &SubjectKey,
    mut recs: Vec<(u64, RecordInput)>,
    summary: &mut ImportSummary,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    loop {
        let Some(p) = prepare_batch(id, sk, recs, summary, bar) else {
            return Ok(());
        };
        let (p, res) = post_batch(id.client.clone(), p).await?;
        recs = apply_results(p.good, res, summary, bar);
        if recs.is_empty() {
            return Ok(());
        }
    }
}

/// The batch in flight: its answer, and the last line it covers.
type InFlight = (
    tokio::task::JoinHandle<anyhow::Result<(Prepared, BatchResult)>>,
    u64,
);

/// Waits for the batch in flight, counts it, sends any retry, and only then
/// moves the progress mark past its lines.
async fn land(
    id: &Identity,
    sk: &SubjectKey,
    inflight: InFlight,
    summary: &mut ImportSummary,
    bar: &indicatif::ProgressBar,
    progress_path: &Path,
) -> anyhow::Result<()> {
    let (handle, last_line) = inflight;
    let (p, res) = handle.await.context("the import request task")??;
    let retry = apply_results(p.good, res, summary, bar);
    if !retry.is_empty() {
        send_batch(id, sk, retry, summary, bar).await?;
    }
    write_progress(progress_path, last_line)
}

/// What a centre operator asks (`tongban match`).
#[derive(Args, Debug, Clone)]
pub struct MatchArgs {
    /// The requester's HPKE key file (to open the answer).
    #[arg(long, env = "TONGBAN_HPKE_KEY")]
    pub hpke_key: PathBuf,
    /// The provider department, e.g. `hefei.civil-affairs`.
    #[arg(long)]
    pub provider: String,
    /// The data-sharing contract, e.g. `house-transfer.marriage`.
    #[arg(long)]
    pub contract: String,
    /// Predicates as a JSON list, e.g.
    /// `[{"field":"status","op":"eq","value":"married"}]`.
    #[arg(long, default_value = "[]")]
    pub predicates: String,
    /// A field whose value is asked for (repeatable; only where the contract allows).
    #[arg(long)]
    pub disclose: Vec<String>,
    /// Where to read the subject's identifier: a file, or `-` for the first
    /// line of stdin (never on the command line, where it would be logged).
    #[arg(long, default_value = "-")]
    pub subject_from: PathBuf,
    /// How long the request stays valid (seconds, at most 300).
    #[arg(long, default_value_t = 60)]
    pub ttl_secs: u64,
}

/// The outcome `tongban match` prints.
#[derive(Debug, serde::Serialize)]
pub struct MatchOutcome {
    /// The verdict (and the rule, for a denial).
    #[serde(flatten)]
    pub verdict: proofs::matching::Verdict,
    /// Disclosed values.
    pub values: Vec<(String, String)>,
    /// The provider chain's height the answer was evaluated at.
    pub evaluated_height: u64,
    /// The provider's chain and the height of the access-log entry.
    pub access_log: (String, u64),
    /// The request id.
    pub request_id: proofs::Hash,
    /// Facts checked here (all hold).
    pub facts_verified: usize,
}

/// Asks a selective match through the member's gateway, verifies the answer
/// again locally with the registry alone, opens it and prints the outcome.
pub async fn ask_match(a: ClientArgs, m: MatchArgs) -> anyhow::Result<std::process::ExitCode> {
    let id = Identity::load(&a)?;
    let (hpke_id, hpke) = keyfile::read_hpke(&m.hpke_key)?;
    if hpke_id != id.member {
        bail!("--hpke-key is for `{hpke_id}`, not `{}`", id.member);
    }
    let subject = read_input(&m.subject_from)?;
    let subject = subject.lines().next().unwrap_or_default().trim().to_owned();
    if subject.is_empty() {
        bail!("no subject identifier given (first line of --subject-from)");
    }
    let contract = id
        .registry
        .contract(&m.contract)
        .with_context(|| format!("no contract `{}` in the registry", m.contract))?;
    let predicates: serde_json::Value =
        serde_json::from_str(&m.predicates).context("--predicates: not JSON")?;
    let question = serde_json::json!({
        "record_type": contract.record_type,
        "predicates": predicates,
        "disclose": m.disclose,
        "purpose": contract.purpose,
    })
    .to_string();
    let roots = id.registry.trust_roots(id.registry_hash)?;
    let now = SystemClock.now_ms();
    let req = crate::client::sign_match(
        &id.registry,
        &roots,
        &id.member,
        &id.key,
        &crate::client::MatchAsk {
            provider: &m.provider,
            contract: &m.contract,
            question: &question,
            subject: &subject,
            ttl_ms: m.ttl_secs.clamp(1, 300) * 1000,
        },
        now,
    )?;
    let (_, reply): (u16, crate::client::MatchReply) = id.client.post("/v1/matches", &req).await?;
    let (plain, report) =
        crate::client::open_match(&reply, &req, &roots, &hpke, SystemClock.now_ms())?;
    print_json(&MatchOutcome {
        verdict: plain.verdict,
        values: plain.values,
        evaluated_height: plain.evaluated_height,
        access_log: (
            reply.answer.access.header.header.chain_id.clone(),
            reply.answer.access.header.header.height,
        ),
        request_id: req.id,
        facts_verified: report.facts.len(),
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// A service centre's application commands.
#[derive(Subcommand, Debug)]
pub enum ApplicationsCommand {
    /// Submit an application: `--bundle ID --reference REF` and the parameters
    /// as a JSON object in a file (`-` for stdin).
    Submit {
        /// The bundle.
        #[arg(long)]
        bundle: String,
        /// The centre's own reference (resubmitting it returns the same application).
        #[arg(long)]
        reference: String,
        /// The parameters file.
        params: PathBuf,
    },
    /// Status and timeline of an application.
    Status {
        /// The application id.
        id: String,
    },
    /// The application's evidence package (JSON, to standard output).
    Evidence {
        /// The application id.
        id: String,
    },
}

/// Runs an application command for a service centre.
pub async fn applications(
    a: ClientArgs,
    cmd: ApplicationsCommand,
) -> anyhow::Result<std::process::ExitCode> {
    let id = Identity::load(&a)?;
    match cmd {
        ApplicationsCommand::Submit {
            bundle,
            reference,
            params,
        } => {
            let params: serde_json::Value = serde_json::from_str(&read_input(&params)?)
                .context("the parameters are not a JSON object")?;
            let (_, v): (u16, serde_json::Value) = id
                .client
                .post(
                    "/v1/applications",
                    &serde_json::json!({ "bundle": bundle, "reference": reference, "params": params }),
                )
                .await?;
            print_json(&v)?;
        }
        ApplicationsCommand::Status { id: app } => {
            let v: serde_json::Value = id.client.get(&format!("/v1/applications/{app}")).await?;
            print_json(&v)?;
        }
        ApplicationsCommand::Evidence { id: app } => {
            let v: serde_json::Value = id
                .client
                .get(&format!("/v1/applications/{app}/evidence"))
                .await?;
            print_json(&v)?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// A utility's (or department's) inbox commands.
#[derive(Subcommand, Debug)]
pub enum UtilityCommand {
    /// List open service requests, opened with the HPKE key.
    Inbox {
        /// The recipient's HPKE key file.
        #[arg(long, env = "TONGBAN_HPKE_KEY")]
        hpke_key: PathBuf,
    },
    /// Close a request with a signed receipt.
    Ack {
        /// The delivery id.
        delivery: String,
        /// Reject instead of accept, with this reason.
        #[arg(long)]
        reject: Option<String>,
    },
    /// Receive pushed service requests: listen where the gateway's
    /// `webhooks` setting points for this member, check each push (signed by
    /// this city's gateway for this member; the centre's signature; the
    /// delivery id), and print one JSON line per new request, shaped like
    /// `inbox` output, before answering 200. The first line printed is
    /// `listening on ADDR`. Close requests with `ack` as usual.
    Receive {
        /// Address to listen on (port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// The recipient's HPKE key file.
        #[arg(long, env = "TONGBAN_HPKE_KEY")]
        hpke_key: PathBuf,
        /// Accepted clock skew between the gateway and this host (ms).
        #[arg(long, default_value_t = 30_000)]
        clock_skew_ms: u64,
    },
}

/// One inbox item as printed by `utility inbox` and `utility receive`.
fn item_json(i: &crate::inbox::InboxItem, hpke: &proofs::seal::HpkeSecretKey) -> serde_json::Value {
    let fields = crate::client::open_delivery(&i.delivery, hpke)
        .map(serde_json::Value::Object)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
    serde_json::json!({
        "delivery": i.delivery.id,
        "application": i.delivery.application,
        "service": i.delivery.service,
        "centre": i.delivery.centre,
        "received_ms": i.received_ms,
        "fields": fields,
    })
}

struct Receiver {
    registry: Registry,
    roots: proofs::trust::TrustRoots,
    verifier: crate::auth::Verifier,
    member: String,
    hpke: proofs::seal::HpkeSecretKey,
    seen: std::sync::Mutex<std::collections::HashSet<proofs::Hash>>,
}

async fn receive_push(
    axum::extract::State(r): axum::extract::State<std::sync::Arc<Receiver>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use crate::webhook::MAX_PUSH_BODY;
    use axum::response::IntoResponse;
    let refuse = |status: u16, code: &str, message: String| {
        (
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST),
            axum::Json(serde_json::json!({ "code": code, "message": message })),
        )
            .into_response()
    };
    if req.method() != axum::http::Method::POST {
        return refuse(405, "webhook.method", "only POST is accepted".into());
    }
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_PUSH_BODY as u64) {
        return refuse(
            413,
            "webhook.too_large",
            format!("body larger than {MAX_PUSH_BODY} bytes"),
        );
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_PUSH_BODY).await {
        Ok(b) => b,
        Err(e) if crate::http_serve::is_body_timeout(&e) => {
            return refuse(
                408,
                "webhook.timeout",
                "the body did not arrive in time".into(),
            );
        }
        Err(_) => {
            return refuse(
                413,
                "webhook.too_large",
                format!("body larger than {MAX_PUSH_BODY} bytes"),
            );
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let presented = crate::auth::Presented {
        member: header(crate::auth::MEMBER),
        timestamp: header(crate::auth::TIMESTAMP),
        nonce: header(crate::auth::NONCE),
        signature: header(crate::auth::SIGNATURE),
        method: "POST",
        path_and_query: &pq,
        body: &body,
    };
    let item = match crate::webhook::verify_push(
        &r.roots,
        &r.registry,
        &r.verifier,
        &r.member,
        &presented,
        SystemClock.now_ms(),
    ) {
        Ok(item) => item,
        Err(e) => {
            eprintln!("refused a push: {} ({})", e, e.code());
            return refuse(e.status(), e.code(), e.to_string());
        }
    };
    let new = r
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(item.delivery.id);
    if new {
        let line = item_json(&item, &r.hpke).to_string();
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // Not printed: not acknowledged, so the gateway pushes it again.
            r.seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&item.delivery.id);
            return refuse(
                503,
                "webhook.output",
                "could not write the request out".into(),
            );
        }
    }
    axum::Json(serde_json::json!({ "delivery": item.delivery.id, "new": new })).into_response()
}

async fn receive(
    id: Identity,
    listen: &str,
    hpke_key: &Path,
    clock_skew_ms: u64,
) -> anyhow::Result<std::process::ExitCode> {
    let (_, hpke) = keyfile::read_hpke(hpke_key)?;
    let roots = id
        .registry
        .trust_roots(id.registry_hash)
        .context("registry validation")?;
    let r = std::sync::Arc::new(Receiver {
        verifier: crate::auth::Verifier::new(&id.member, clock_skew_ms, SystemClock.now_ms()),
        registry: id.registry,
        roots,
        member: id.member,
        hpke,
        seen: std::sync::Mutex::new(std::collections::HashSet::new()),
    });
    let listener = crate::http_serve::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
    }
    let app = axum::Router::new().fallback(receive_push).with_state(r);
    // The gateway's connection limits and timeouts, at their defaults.
    crate::http_serve::serve(
        listener,
        app,
        crate::http_serve::Limits::default(),
        std::sync::Arc::default(),
        crate::server::shutdown_signal(),
    )
    .await;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs an inbox command.
pub async fn utility(a: ClientArgs, cmd: UtilityCommand) -> anyhow::Result<std::process::ExitCode> {
    let id = Identity::load(&a)?;
    match cmd {
        UtilityCommand::Receive {
            listen,
            hpke_key,
            clock_skew_ms,
        } => return receive(id, &listen, &hpke_key, clock_skew_ms).await,
        UtilityCommand::Inbox { hpke_key } => {
            let items: Vec<crate::inbox::InboxItem> = id.client.get("/v1/inbox").await?;
            let (_, hpke) = keyfile::read_hpke(&hpke_key)?;
            let out: Vec<serde_json::Value> = items.iter().map(|i| item_json(i, &hpke)).collect();
            print_json(&out)?;
        }
        UtilityCommand::Ack { delivery, reject } => {
            let items: Vec<crate::inbox::InboxItem> = id.client.get("/v1/inbox").await?;
            let Some(item) = items.iter().find(|i| i.delivery.id.to_string() == delivery) else {
                bail!("no open request {delivery} in this inbox");
            };
            let r = crate::client::sign_receipt(
                &id.chain_id,
                &id.member,
                &id.key,
                &item.delivery,
                reject.is_none(),
                reject.as_deref().unwrap_or(""),
                SystemClock.now_ms(),
            );
            let (_, v): (u16, serde_json::Value) = id.client.post("/v1/inbox/receipt", &r).await?;
            print_json(&v)?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Verifies an application evidence package offline against a registry file;
/// prints every fact (or JSON). Exit code 0 only if every fact holds.
pub fn inspect_verify(
    packages: &[PathBuf],
    registry: &Path,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let (reg, hash) =
        regions::load(registry).with_context(|| format!("registry {}", registry.display()))?;
    let roots = reg.trust_roots(hash).context("registry validation")?;
    let inspector = regions::evidence::Inspector::new(&reg, &roots, SystemClock.now_ms());
    let mut all_ok = true;
    let mut verified = 0usize;
    let mut reports = Vec::new();
    for package in packages {
        let text = read_bounded(package, MAX_PACKAGE_BYTES, "package")?;
        // An undecodable package is one failed fact (docs/encoding.md
        // section 15, "Strict reading"); the other packages are still checked.
        let report = match regions::evidence::parse_package(&text) {
            Ok(pkg) => inspector.verify(&pkg),
            Err(e) => {
                let mut r = proofs::Report::new();
                r.fails(
                    "package",
                    "package.decodes",
                    "package.malformed",
                    format!("not an application evidence package: {e}"),
                    "an application evidence package read strictly",
                    "undecodable",
                );
                r
            }
        };
        all_ok &= report.ok();
        verified += usize::from(report.ok());
        if json {
            reports.push(serde_json::json!({
                "package": package.display().to_string(), "ok": report.ok(), "report": report,
            }));
            continue;
        }
        if packages.len() > 1 {
            println!("== {}", package.display());
        }
        print!("{report}");
        println!(
            "{}",
            if report.ok() {
                "VERIFIED: every fact holds"
            } else {
                "NOT VERIFIED"
            }
        );
    }
    let cannot_show = regions::evidence::CANNOT_SHOW;
    if json {
        // One package: its object, as before; several: a list of them.
        if reports.len() == 1 {
            let one = reports.pop().unwrap_or_default();
            print_json(&serde_json::json!({
                "ok": one["ok"], "report": one["report"], "cannot_show": cannot_show,
            }))?;
        } else {
            print_json(&serde_json::json!({
                "ok": all_ok, "packages": reports, "cannot_show": cannot_show,
            }))?;
        }
    } else {
        if packages.len() > 1 {
            println!("{verified} of {} packages verified", packages.len());
        }
        println!("\nWhat a package cannot show, even when every fact holds:");
        for line in cannot_show {
            println!("  - {line}");
        }
    }
    Ok(if all_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Exports the member's city chain from genesis (JSON, to standard output).
pub async fn chain_export(a: ClientArgs) -> anyhow::Result<std::process::ExitCode> {
    let id = Identity::load(&a)?;
    let mut all: Option<proofs::chain::ChainExport> = None;
    loop {
        let from = all.as_ref().map_or(0, |e| e.blocks.len() as u64);
        let page: proofs::chain::ChainExport =
            id.client.get(&format!("/v1/chain/export/{from}")).await?;
        let done = page.blocks.len() < crate::api::chain::EXPORT_PAGE as usize;
        match &mut all {
            None => all = Some(page),
            Some(e) => e.blocks.extend(page.blocks),
        }
        if done {
            break;
        }
    }
    print_json(&all)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Verifies a chain export from genesis offline against a registry file.
/// The export is read only up to `max_bytes` (refused beyond).
pub fn inspect_chain(
    export: &Path,
    registry: &Path,
    max_bytes: u64,
) -> anyhow::Result<std::process::ExitCode> {
    let (reg, hash) =
        regions::load(registry).with_context(|| format!("registry {}", registry.display()))?;
    let roots = reg.trust_roots(hash).context("registry validation")?;
    let text = read_bounded(export, max_bytes, "chain export")?;
    let e: proofs::chain::ChainExport =
        serde_json::from_str(&text).context("not a chain export")?;
    let report = proofs::chain::verify_export(&e, &roots, SystemClock.now_ms());
    print!("{report}");
    Ok(if report.ok() {
        println!("VERIFIED: the chain from genesis");
        std::process::ExitCode::SUCCESS
    } else {
        println!("NOT VERIFIED");
        std::process::ExitCode::FAILURE
    })
}
