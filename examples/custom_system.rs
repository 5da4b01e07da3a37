//! Plugging your own system into durasim, touching nothing inside it.
//!
//! The system: a key-value store that keeps each key in its own file and
//! replaces it atomically (write a temp file, fsync it, rename it over the
//! key, fsync the directory) before acknowledging a put. Its model: after
//! any crash and recovery, each key holds its last acknowledged value, or
//! the value of a later put whose outcome was unknown. Its invariant id is
//! its own: `KV1`.
//!
//! ```sh
//! cargo run --release --example custom_system -- sweep --scenario kv-files --seeds 0..500
//! cargo run --release --example custom_system -- sweep --scenario kv-files --bug kv-skip-dir-sync
//! cargo run --release --example custom_system -- shrink --scenario kv-files --seed 3 --bug kv-skip-dir-sync
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim::harness::{Finding, KnownBug, RunParams, Scenario, ScenarioFuture, ScenarioReport};
use durasim::sim::{Disk, Sim};

/// One put of the workload and what its caller learned.
#[derive(Debug, Clone)]
struct Put {
    key: u64,
    value: u64,
    acked: bool,
}

/// The history the store's caller records: every put, in issue order.
type History = Arc<Mutex<Vec<Put>>>;

const KEYS: u64 = 4;

/// A put, the atomic-replace way. With `skip_dir_sync` the rename is never
/// made durable: the classic bug that loses acknowledged writes on power
/// loss.
async fn put(disk: &Disk, key: u64, value: u64, skip_dir_sync: bool) -> std::io::Result<()> {
    let tmp = format!("kv/{key}.tmp");
    let file = disk.create(&tmp).await?;
    file.write_at(0, &value.to_le_bytes()).await?;
    file.sync_all().await?;
    disk.rename(&tmp, &format!("kv/{key}")).await?;
    if !skip_dir_sync {
        disk.sync_dir("kv").await?;
    }
    Ok(())
}

/// The store's process: recover (nothing to do: files are the state), then
/// run puts until `size` have been issued across all incarnations.
async fn store(disk: Disk, history: History, size: u64, skip_dir_sync: bool) {
    if disk.create_dir_all("kv").await.is_err() || disk.sync_dir("").await.is_err() {
        return;
    }
    loop {
        let (key, value) = {
            let Ok(mut h) = history.lock() else { return };
            let n = h.len() as u64;
            if n >= size {
                return;
            }
            let put = Put {
                key: n % KEYS,
                value: n + 1,
                acked: false,
            };
            h.push(put.clone());
            (put.key, put.value)
        };
        if put(&disk, key, value, skip_dir_sync).await.is_err() {
            return; // an I/O error ends this incarnation; the outcome stays unknown
        }
        if let Ok(mut h) = history.lock() {
            if let Some(p) = h.iter_mut().rev().find(|p| p.value == value) {
                p.acked = true;
            }
        }
        durasim::sim::clock::sleep(Duration::from_millis(2)).await;
    }
}

/// The model: for each key, the values recovery may expose.
fn check(
    history: &[Put],
    files: &BTreeMap<String, Vec<u8>>,
    now: durasim::sim::SimTime,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for key in 0..KEYS {
        let puts: Vec<&Put> = history.iter().filter(|p| p.key == key).collect();
        let last_acked = puts.iter().rposition(|p| p.acked);
        // Allowed: the last acknowledged value, or any later (unknown) one;
        // with nothing acknowledged, also "no file".
        let allowed: Vec<u64> = puts[last_acked.unwrap_or(0)..]
            .iter()
            .map(|p| p.value)
            .collect();
        let found = files
            .get(&format!("kv/{key}"))
            .and_then(|b| b.get(..8))
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        let ok = match (found, last_acked) {
            (Some(v), _) => allowed.contains(&v),
            (None, None) => true,
            (None, Some(_)) => false,
        };
        if !ok {
            findings.push(Finding {
                invariant: "KV1".into(),
                time: now,
                ops: Vec::new(),
                message: format!(
                    "key {key} holds {found:?} after recovery; allowed {allowed:?} (last acknowledged {:?})",
                    last_acked.map(|i| puts[i].value)
                ),
            });
        }
    }
    findings
}

/// The scenario: build the world, run the workload through the phases,
/// check, report.
struct KvFiles;

impl Scenario for KvFiles {
    fn name(&self) -> &'static str {
        "kv-files"
    }

    fn summary(&self) -> &'static str {
        "example: file-per-key store with atomic replace; KV1 acknowledged puts survive"
    }

    fn default_size(&self) -> u32 {
        40
    }

    fn run<'a>(&'a self, sim: Sim, params: &'a RunParams) -> ScenarioFuture<'a> {
        Box::pin(async move {
            let history: History = Arc::default();
            let (h, size) = (history.clone(), u64::from(params.size));
            let skip = params.bug("kv-skip-dir-sync");
            let id = sim.spawn_process("kv", move |ctx| store(ctx.disk(), h.clone(), size, skip));
            sim.start_faults(&[id]);
            sim.sleep(Duration::from_millis(300)).await;
            sim.heal();
            sim.sleep(Duration::from_millis(500)).await;
            sim.final_crash(&[id]);
            sim.sleep(Duration::from_millis(50)).await;
            let history = history.lock().map(|h| h.clone()).unwrap_or_default();
            ScenarioReport {
                findings: check(&history, &sim.disk_files(id), sim.now()),
                operations: history.len() as u64,
            }
        })
    }
}

static KV_FILES: KvFiles = KvFiles;

fn main() -> ExitCode {
    let registry = durasim::scenarios::registry()
        .with_scenario(&KV_FILES)
        .with_bug(KnownBug {
            name: "kv-skip-dir-sync",
            scenario: "kv-files",
            spec: "example",
            summary: "rename is never made durable: a power loss reverts acknowledged puts (KV1)",
        });
    durasim::cli::main_with(registry)
}
