//! `tongban`: one binary for the gateway (`serve`), its keys and registry
//! checks, and the client commands departments use. See `tongban --help`.

// A command-line program: printing is its output.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

/// mimalloc: the ledger path allocates heavily (sled node copies); measured
/// faster than the system allocator (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gateway::cli;
use gateway::clock::SystemClock;
use gateway::config::Config;
use gateway::server::{Gateway, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "tongban",
    version,
    about = "Tongban cross-region interoperability gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "TONGBAN_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: the example Yangtze River Delta region on this machine
    /// (four city gateways and the Anhui hub over loopback libp2p), every
    /// bundle run end to end with utilities answering, evidence packages
    /// written and verified. Keeps serving until Ctrl-C unless `--exit`.
    Demo {
        /// Output folder: registry, each gateway's data and TEST keys,
        /// evidence packages, summary.json (cleared on each run).
        #[arg(long, default_value = "target/tongban-demo")]
        out: PathBuf,
        /// Generated residents per city (each with their licences).
        #[arg(long, default_value_t = 2000)]
        subjects: usize,
        /// Approved applications per bundle (plus one rejected house transfer
        /// and one rejected business opening).
        #[arg(long, default_value_t = 5)]
        applications: usize,
        /// First HTTP port: Shanghai, Nanjing, Hangzhou and Hefei take this and
        /// the next three (0: any free ports).
        #[arg(long, default_value_t = 8081)]
        http_port: u16,
        /// Run the scenario once and exit: status 0 only if every application
        /// ended as expected and every package verified.
        #[arg(long)]
        exit: bool,
    },
    /// Run one city's gateway.
    Serve {
        /// The gateway configuration (TOML).
        #[arg(long, env = "TONGBAN_CONFIG", required_unless_present = "example_city")]
        config: Option<PathBuf>,
        /// Instead of a config: run an example gateway for this city of the
        /// example region (`nanjing`, `shanghai`, `hangzhou`, `hefei`), with TEST
        /// keys laid out in --dir on first use.
        #[arg(long, conflicts_with = "config")]
        example_city: Option<String>,
        /// Folder for --example-city.
        #[arg(long, default_value = "target/tongban-example")]
        dir: PathBuf,
        /// Listen address for --example-city.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Key files.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Registry files.
    Region {
        #[command(subcommand)]
        command: RegionCommand,
    },
    /// A department's records (signed requests to its city's gateway).
    Records {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::RecordsCommand,
    },
    /// Benchmarks (see docs/performance.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Ask a selective match (a service centre or department): the answer is
    /// verified by the gateway and again here, then opened with the HPKE key.
    Match {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(flatten)]
        ask: cli::MatchArgs,
    },
    /// A service centre's applications for one-stop bundles.
    Applications {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::ApplicationsCommand,
    },
    /// A utility's (or department's) inbox of service requests.
    Utility {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::UtilityCommand,
    },
    /// The member's city chain.
    Chain {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// The gateway's own store, offline (the gateway stopped).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Offline verification, trusting only the registry file.
    Inspect {
        #[command(subcommand)]
        command: InspectCommand,
    },
    /// Run a hub: a relay between city gateways with no chain of its own.
    Hub {
        /// The registry file.
        #[arg(long, env = "TONGBAN_REGISTRY")]
        registry: PathBuf,
        /// Its pinned SHA-256.
        #[arg(long, env = "TONGBAN_REGISTRY_SHA256")]
        registry_sha256: proofs::Hash,
        /// The hub's Ed25519 key file.
        #[arg(long, env = "TONGBAN_KEY")]
        key: PathBuf,
        /// Listen address (libp2p multiaddr).
        #[arg(long, default_value = "/ip4/0.0.0.0/tcp/4100")]
        listen: String,
        /// Peer address override, `ID=MULTIADDR` (repeatable).
        #[arg(long)]
        peer: Vec<String>,
    },
    /// Fetch a transaction's proof bundle and verify it locally with the registry.
    Proof {
        #[command(flatten)]
        client: cli::ClientArgs,
        /// The transaction's leaf hash.
        leaf: String,
    },
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Export the chain from genesis (JSON, to standard output).
    Export,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Check every block, value-log item and stored record of a stopped
    /// gateway's data directory; prints each fault, exits non-zero on any.
    Check {
        /// The gateway's configuration (its data_dir, registry and data keys).
        #[arg(long, env = "TONGBAN_CONFIG")]
        config: PathBuf,
    },
    /// After a data-key rotation: re-encrypt every stored value under
    /// `keys.data` (the old key listed under `keys.data_retired`), so that the
    /// retired key can then be dropped. Gateway stopped; resumable.
    Reseal {
        /// The gateway's configuration.
        #[arg(long, env = "TONGBAN_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum InspectCommand {
    /// Verify a whole chain export from genesis: certificates, links, roots, authors.
    Chain {
        /// The export (JSON; `-` for stdin).
        export: PathBuf,
        /// The region's registry file.
        #[arg(long)]
        registry: PathBuf,
        /// The largest export read, in bytes (a larger one is refused
        /// before it is read).
        #[arg(long, default_value_t = cli::MAX_EXPORT_BYTES)]
        max_bytes: u64,
    },
    /// Verify an application's evidence package; exit code 0 only if every fact holds.
    /// Several packages: each is checked in full; a quorum certificate shared
    /// by several (the same block's exact bytes) is verified once.
    Verify {
        /// The packages (JSON; `-` for stdin; at most 64 MiB each, a larger
        /// one is refused before it is read).
        #[arg(required = true)]
        packages: Vec<PathBuf>,
        /// The region's registry file.
        #[arg(long)]
        registry: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Every gateway benchmark with its default sizes (ledger, matches,
    /// bundles and the inspector), one after the other; prints a Markdown
    /// table with the machine it ran on.
    All {
        /// Smaller runs (about a tenth): a quick look, not the figures to report.
        #[arg(long)]
        quick: bool,
        /// Also write the figures and the machine as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// House-transfer applications across three cities; prints JSON.
    Bundle {
        /// Applications in the run.
        #[arg(long, default_value_t = 1000)]
        applications: usize,
        /// Offered rate (applications/s).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Packages verified in the inspector run.
        #[arg(long, default_value_t = 2000)]
        packages: usize,
    },
    /// Cross-city matches between two gateways over loopback libp2p; prints JSON.
    Match {
        /// Matches in the throughput run.
        #[arg(long, default_value_t = 5000)]
        matches: usize,
        /// Concurrent callers in the throughput run.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Offered rate of the latency run (matches/s).
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Matches in the latency run.
        #[arg(long, default_value_t = 3000)]
        latency_matches: usize,
    },
    /// Ledger benchmarks: API ingest, latency, bulk import, sizes, proof generation.
    Ingest {
        /// Records for the API ingest run.
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        /// Records per HTTP request.
        #[arg(long, default_value_t = 200)]
        per_request: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Records for the bulk import run.
        #[arg(long, default_value_t = 1_000_000)]
        import_records: usize,
        /// Records per import batch.
        #[arg(long, default_value_t = 4096)]
        import_batch: usize,
        /// Records for the gateway-capacity import (batches prepared before timing).
        #[arg(long, default_value_t = 1_000_000)]
        import_presigned: usize,
        /// Proofs to generate.
        #[arg(long, default_value_t = 200_000)]
        proofs: usize,
        /// The gateway's `[ledger] index_memtable_entries` (default: the gateway's default).
        #[arg(long)]
        index_memtable_entries: Option<usize>,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate key files (mode 0600) and print the public parts for the registry.
    Gen(KeysGen),
}

#[derive(Args)]
struct KeysGen {
    /// The registry id the keys are for (e.g. `nanjing.civil-affairs`, `nanjing/endorser/1`, `nanjing`).
    #[arg(long)]
    id: String,
    /// Folder to write into (created if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// What to generate.
    #[arg(long, value_enum, default_value = "member")]
    kind: GenKind,
}

#[derive(Clone, Copy, ValueEnum)]
enum GenKind {
    /// An Ed25519 signing key and an X25519 HPKE key (departments, utilities, centres).
    Member,
    /// An Ed25519 signing key only (gateways, endorsers).
    Signing,
    /// A city's subject-reference key.
    Subject,
    /// A gateway's data key (record values at rest; `keys.data`).
    Data,
}

#[derive(Subcommand)]
enum RegionCommand {
    /// Validate a registry file and print its SHA-256 (the hash every party pins).
    Check {
        /// The registry file.
        file: PathBuf,
    },
}

fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TONGBAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo and the benchmarks print their own results; their gateways
    // log warnings only (a log line per request would be measured too).
    let default = if matches!(cli.command, Command::Demo { .. } | Command::Bench { .. }) {
        "warn"
    } else {
        "info"
    };
    init_logs(cli.log_format, default);
    if matches!(cli.command, Command::Serve { .. } | Command::Utility { .. }) {
        // A server holds a descriptor per connection: use the hard limit.
        let (soft, hard) = gateway::http_serve::raise_fd_limit();
        tracing::debug!(soft, hard, "open-file limit");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Serve {
            config,
            example_city,
            dir,
            listen,
        } => {
            let config = match (config, example_city) {
                (Some(c), _) => c,
                (None, Some(city)) => {
                    let dir = dir.join(&city);
                    let path = dir.join("gateway.toml");
                    if !path.exists() {
                        gateway::testkit::write_city(&dir, &city, &listen, "").with_context(
                            || format!("laying out the example gateway in {}", dir.display()),
                        )?;
                        eprintln!(
                            "example gateway for `{city}` laid out in {} (TEST KEYS ONLY)",
                            dir.display()
                        );
                    }
                    eprintln!(
                        "department key files: {}/keys/<department>.ed25519.key; subject key: {}/keys/subject.key",
                        dir.display(),
                        dir.display()
                    );
                    path
                }
                (None, None) => bail!("give --config FILE or --example-city CITY"),
            };
            let cfg = Config::load(&config, &|k| std::env::var(k).ok())?;
            let gw = tokio::task::spawn_blocking(move || {
                let g = Gateway::open(&cfg, Arc::new(SystemClock));
                (g, cfg)
            })
            .await?;
            let (gw, cfg) = (gw.0?, gw.1);
            let listener = gateway::http_serve::bind(&cfg.http_listen)
                .await
                .with_context(|| format!("binding {}", cfg.http_listen))?;
            let addr = listener.local_addr()?;
            tracing::info!(
                city = %cfg.city,
                chain = %gw.state.ledger.chain_id(),
                height = gw.state.ledger.head().height,
                verified_blocks = gw.open_report.blocks,
                verified_txs = gw.open_report.transactions,
                %addr,
                "gateway serving"
            );
            // The one line scripts and tests wait for.
            println!("listening on http://{addr}");
            gw.serve(listener, shutdown_signal()).await?;
            tracing::info!("gateway stopped; every acknowledged write is on disk");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Gen(g),
        } => {
            std::fs::create_dir_all(&g.out)
                .with_context(|| format!("creating {}", g.out.display()))?;
            let file_id = g.id.replace('/', "-");
            let mut lines = Vec::new();
            match g.kind {
                GenKind::Member | GenKind::Signing => {
                    let seed = gateway::keyfile::random_secret();
                    let p = g.out.join(format!("{file_id}.ed25519.key"));
                    gateway::keyfile::write(&p, gateway::keyfile::KeyKind::Ed25519, &g.id, &seed)?;
                    lines.push(format!(
                        "signing_key = \"{}\"   # {}",
                        proofs::SigningKey::from_seed(&seed).public().to_hex(),
                        p.display()
                    ));
                    if matches!(g.kind, GenKind::Member) {
                        let ikm = gateway::keyfile::random_secret();
                        let p = g.out.join(format!("{file_id}.x25519.key"));
                        gateway::keyfile::write(
                            &p,
                            gateway::keyfile::KeyKind::X25519,
                            &g.id,
                            &ikm,
                        )?;
                        lines.push(format!(
                            "hpke_key = \"{}\"   # {}",
                            proofs::seal::HpkeSecretKey::derive(&ikm).public().to_hex(),
                            p.display()
                        ));
                    }
                }
                GenKind::Subject => {
                    let p = g.out.join(format!("{file_id}.subject.key"));
                    gateway::keyfile::write(
                        &p,
                        gateway::keyfile::KeyKind::Subject,
                        &g.id,
                        &gateway::keyfile::random_secret(),
                    )?;
                    lines.push(format!("# subject key written to {} (secret; share only with the city's departments)", p.display()));
                }
                GenKind::Data => {
                    let p = g.out.join(format!("{file_id}.data.key"));
                    let secret = gateway::keyfile::random_secret();
                    gateway::keyfile::write(&p, gateway::keyfile::KeyKind::Data, &g.id, &secret)?;
                    lines.push(format!(
                        "# data key {} written to {} (secret; never leaves the gateway; back it up: without it the record values cannot be read)",
                        hex::encode(gateway::datakey::key_id(&secret)),
                        p.display()
                    ));
                }
            }
            println!("# public parts for the registry entry `{}`:", g.id);
            for l in lines {
                println!("{l}");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Store {
            command: StoreCommand::Check { config },
        } => {
            let cfg = Config::load(&config, &|k| std::env::var(k).ok())?;
            let check =
                tokio::task::spawn_blocking(move || gateway::server::check_store(&cfg)).await?;
            let check = match check {
                Ok(c) => c,
                Err(e) => {
                    // Damaged, or still open by a running gateway (sled's lock).
                    eprintln!("error: the store cannot be opened: {e:#}");
                    return Ok(std::process::ExitCode::FAILURE);
                }
            };
            for p in &check.problems {
                eprintln!("store.corrupt: {p}");
            }
            println!(
                "{} blocks and {} transactions verified, {} record values checked, {} problem(s)",
                check.open.blocks,
                check.open.transactions,
                check.records,
                check.problems.len()
            );
            Ok(if check.problems.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Command::Store {
            command: StoreCommand::Reseal { config },
        } => {
            let cfg = Config::load(&config, &|k| std::env::var(k).ok())?;
            let (blocks, values) =
                tokio::task::spawn_blocking(move || gateway::server::reseal_store(&cfg)).await??;
            println!(
                "{values} stored values in {blocks} blocks re-encrypted under keys.data; the retired keys are no longer needed"
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Region {
            command: RegionCommand::Check { file },
        } => {
            let (reg, hash) =
                regions::load(&file).with_context(|| format!("reading {}", file.display()))?;
            let problems = reg.problems();
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("invalid: {p}");
                }
                bail!("{} problem(s) in {}", problems.len(), file.display());
            }
            reg.trust_roots(hash)?;
            println!("registry {} is valid", file.display());
            println!(
                "region:  {} (version {})",
                reg.region.id, reg.region.version
            );
            println!(
                "cities:  {}",
                reg.cities
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!("sha256:  {hash}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Records { client, command } => cli::records(client, command).await,
        Command::Proof { client, leaf } => cli::proof(client, &leaf).await,
        Command::Match { client, ask } => cli::ask_match(client, ask).await,
        Command::Applications { client, command } => cli::applications(client, command).await,
        Command::Utility { client, command } => cli::utility(client, command).await,
        Command::Chain {
            client,
            command: ChainCommand::Export,
        } => cli::chain_export(client).await,
        Command::Inspect {
            command:
                InspectCommand::Chain {
                    export,
                    registry,
                    max_bytes,
                },
        } => cli::inspect_chain(&export, &registry, max_bytes),
        Command::Inspect {
            command:
                InspectCommand::Verify {
                    packages,
                    registry,
                    json,
                },
        } => cli::inspect_verify(&packages, &registry, json),
        Command::Hub {
            registry,
            registry_sha256,
            key,
            listen,
            peer,
        } => {
            let reg = regions::load_pinned(&registry, registry_sha256)
                .with_context(|| format!("registry {}", registry.display()))?;
            reg.trust_roots(registry_sha256)
                .context("registry validation")?;
            let (id, k) = gateway::keyfile::read_signing(&key)?;
            if !reg
                .hubs
                .iter()
                .any(|h| h.id == id && h.signing_key == k.public().to_hex())
            {
                bail!(
                    "{} is not the key of a hub in the registry (`{id}`)",
                    key.display()
                );
            }
            let mut overrides = std::collections::BTreeMap::new();
            for p in peer {
                let (pid, addr) = p
                    .split_once('=')
                    .with_context(|| format!("--peer {p}: expected ID=MULTIADDR"))?;
                overrides
                    .entry(pid.to_owned())
                    .or_insert_with(Vec::new)
                    .push(addr.to_owned());
            }
            let cfg = gateway::network::relay_config(&reg, &id, k, &[listen], &overrides)?;
            let node = relay::Relay::start(cfg, Arc::new(gateway::network::HubHandler)).await?;
            for a in node.listen_addrs().await {
                println!("hub `{id}` listening on {a}/p2p/{}", node.local_peer_id());
            }
            shutdown_signal().await;
            drop(node);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo {
            out,
            subjects,
            applications,
            http_port,
            exit,
        } => {
            let o = gateway::demo::DemoOptions {
                out,
                subjects,
                applications,
                http_port,
            };
            let ok = gateway::demo::run(o, exit, shutdown_signal()).await?;
            Ok(if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Command::Bench {
            command: BenchCommand::All { quick, json },
        } => {
            let report = gateway::bench::all(quick).await?;
            println!("{}", gateway::bench::render_all(&report));
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Bundle {
                    applications,
                    rate,
                    packages,
                },
        } => {
            let figs = gateway::bench_bundle::run(gateway::bench_bundle::BundleOptions {
                applications,
                rate,
                packages,
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&figs)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Match {
                    matches,
                    concurrency,
                    rate,
                    latency_matches,
                },
        } => {
            let figs = gateway::bench_match::run(gateway::bench_match::MatchOptions {
                matches,
                concurrency,
                rate,
                latency_matches,
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&figs)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Bench {
            command:
                BenchCommand::Ingest {
                    records,
                    per_request,
                    connections,
                    import_records,
                    import_batch,
                    import_presigned,
                    proofs,
                    index_memtable_entries,
                    json,
                },
        } => {
            let figs = gateway::bench::run(gateway::bench::Options {
                ingest_records: records,
                per_request,
                connections,
                import_records,
                import_batch,
                import_presigned,
                proofs,
                index_memtable_entries,
            })
            .await?;
            gateway::bench::print_table(&figs);
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_vec_pretty(&figs)?)?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
