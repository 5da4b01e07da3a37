//! A toy multi-process workload that exercises every part of the world:
//! a durable log server and clients over the network, under any profile.
//! Determinism tests and the world benchmark run it; it is also a short
//! example of a system written against `durasim-sim`.
//!
//! The server appends each request to `log/data` as a checksummed,
//! length-prefixed record, fsyncs, and only then acknowledges; on start it
//! recovers the log, truncating a torn or corrupt tail. It also rewrites a
//! small `meta` file by the atomic-replace idiom (write temp, fsync, rename,
//! sync dir), to exercise the namespace. Clients retry unacknowledged
//! requests until acknowledged.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::net::{Endpoint, Net};
use crate::trace::TraceMode;
use crate::world::{run, ProcessCtx, ProcessId, RunConfig, RunOutcome, Sim};
use crate::{Disk, FaultConfig, Tape};

/// Messages of the toy protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToyMsg {
    /// Client → server: append `value` as request `(client, seq)`.
    Append {
        /// Requesting client.
        client: ProcessId,
        /// Client-local request number.
        seq: u64,
        /// The value.
        value: u64,
    },
    /// Server → client: request `seq` is durable.
    Ack {
        /// The acknowledged request number.
        seq: u64,
    },
}

/// What a toy run found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToyReport {
    /// Requests acknowledged to clients: (client, seq).
    pub acked: BTreeSet<(u64, u64)>,
    /// Records the final recovery found: (client, seq).
    pub recovered: BTreeSet<(u64, u64)>,
    /// Acknowledged requests missing after the final recovery.
    pub lost: usize,
    /// Whether every client got every ack before the deadline.
    pub clients_done: bool,
}

/// Application fault: the server is too busy to take a request.
pub const STORAGE_BUSY: crate::Site = crate::Site::fault("toy.storage_busy", "storage-busy");

const LOG_DIR: &str = "log";
const LOG: &str = "log/data";
const LOG_NEW: &str = "log/data.new";
const RECORD: usize = 4 + 24 + 8;
/// Each record sits alone in a slot of one sector, so appending a record
/// never rewrites a sector holding an acknowledged one: a torn append can
/// only damage itself. The toy's machines use 512-byte sectors
/// ([`toy_disk`]); on larger sectors this layout would not be safe.
const SLOT: usize = 512;

/// The disk the toy's machines run on: 512-byte sectors, the record slot size.
pub fn toy_disk() -> crate::DiskConfig {
    crate::DiskConfig {
        sector_size: SLOT as u32,
        ..crate::DiskConfig::default()
    }
}

fn encode(client: u64, seq: u64, value: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&client.to_le_bytes());
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&value.to_le_bytes());
    let mut out = Vec::with_capacity(SLOT);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&checksum(&body).to_le_bytes());
    out.resize(SLOT, 0);
    out
}

fn checksum(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// Parse records until the first torn or corrupt one; returns the records
/// and the length of the valid prefix.
fn parse(bytes: &[u8]) -> (Vec<(u64, u64)>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + RECORD) {
        let len = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let body = &chunk[4..28];
        let sum = u64::from_le_bytes(chunk[28..36].try_into().unwrap_or([0; 8]));
        if len != 24 || sum != checksum(body) {
            break;
        }
        let client = u64::from_le_bytes(body[0..8].try_into().unwrap_or([0; 8]));
        let seq = u64::from_le_bytes(body[8..16].try_into().unwrap_or([0; 8]));
        records.push((client, seq));
        at += SLOT;
    }
    (records, at.min(bytes.len()))
}

/// Recover the log: copy its valid prefix into a new file, sync it, and
/// atomically rename it over the log.
///
/// Two durability traps shape this. After a failed fsync the page cache
/// still shows bytes that may never reach the disk (a later fsync of clean
/// pages "succeeds" without writing them), so recovery must write what it
/// trusts again before acknowledging anything it holds. But rewriting the
/// log *in place* would put acknowledged sectors at risk of a torn write;
/// writing a fresh copy and renaming it risks nothing already durable.
async fn recover(disk: &Disk) -> std::io::Result<Vec<(u64, u64)>> {
    disk.create_dir_all(LOG_DIR).await?;
    let bytes = match disk.read(LOG).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let (records, valid) = parse(&bytes);
    let fresh = disk.create(LOG_NEW).await?;
    fresh.write_at(0, &bytes[..valid]).await?;
    fresh.sync_all().await?;
    disk.rename(LOG_NEW, LOG).await?;
    disk.sync_dir(LOG_DIR).await?;
    disk.sync_dir("").await?;
    Ok(records)
}

async fn server(ctx: ProcessCtx, net: Net<ToyMsg>, ack_before_fsync: bool) {
    let endpoint = net.endpoint(&ctx);
    // A fatal I/O error ends the serving loop; like a supervisor restarting
    // a failed daemon, recovery then runs again from the disk.
    loop {
        let _ = serve(&ctx, &endpoint, ack_before_fsync).await;
        crate::clock::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve(
    ctx: &ProcessCtx,
    endpoint: &Endpoint<ToyMsg>,
    ack_before_fsync: bool,
) -> std::io::Result<()> {
    let disk = ctx.disk();
    let records = recover(&disk).await?;
    ctx.trace("toy.recovered", &[records.len() as u64]);
    let log = disk.open(LOG).await?;
    // An access log per incarnation that is never synced, names included
    // (the `access` directory is never synced): whatever a power loss does
    // to it is harmless.
    disk.create_dir_all("access").await?;
    let access = disk
        .create(&format!("access/{}", ctx.incarnation()))
        .await?;
    let mut durable: BTreeSet<(u64, u64)> = records.into_iter().collect();
    let mut appended = 0u64;
    loop {
        let (from, msg) = endpoint.recv().await;
        let ToyMsg::Append { client, seq, value } = msg else {
            continue;
        };
        let key = (u64::from(client), seq);
        access.append(&encode(key.0, seq, value)).await?;
        if crate::buggify_with(&STORAGE_BUSY, || {
            format!("server drops request {key:?}: storage busy")
        }) {
            continue;
        }
        if !durable.contains(&key) {
            log.append(&encode(key.0, seq, value)).await?;
            if ack_before_fsync {
                // The canary bug: acknowledge what is not durable yet.
                endpoint.send(from, ToyMsg::Ack { seq });
            }
            // After a failed fsync the record's fate is unknown: never ack
            // it; recover from the disk instead.
            if let Err(e) = log.sync_all().await {
                ctx.trace("toy.fsync_failed", &[key.0, seq]);
                return Err(e);
            }
            durable.insert(key);
            appended += 1;
            if appended % 8 == 0 {
                write_meta(&disk, appended).await?;
            }
        }
        endpoint.send(from, ToyMsg::Ack { seq });
    }
}

async fn write_meta(disk: &Disk, appended: u64) -> std::io::Result<()> {
    let tmp = disk.create("meta.tmp").await?;
    tmp.write_at(0, &appended.to_le_bytes()).await?;
    tmp.sync_all().await?;
    disk.rename("meta.tmp", "meta").await?;
    disk.sync_dir("").await
}

type Acks = Arc<Mutex<BTreeSet<(u64, u64)>>>;

async fn client(ctx: ProcessCtx, net: Net<ToyMsg>, server: ProcessId, requests: u64, acks: Acks) {
    let endpoint: Endpoint<ToyMsg> = net.endpoint(&ctx);
    let me = ctx.id();
    for seq in 0..requests {
        if acks.lock().is_ok_and(|a| a.contains(&(u64::from(me), seq))) {
            continue; // acknowledged before this client restarted
        }
        loop {
            endpoint.send(
                server,
                ToyMsg::Append {
                    client: me,
                    seq,
                    value: seq * 7 + u64::from(me),
                },
            );
            match endpoint.recv_timeout(Duration::from_millis(20)).await {
                Some((_, ToyMsg::Ack { seq: acked })) if acked == seq => {
                    if let Ok(mut a) = acks.lock() {
                        a.insert((u64::from(me), seq));
                    }
                    ctx.trace("toy.acked", &[u64::from(me), seq]);
                    break;
                }
                _ => continue,
            }
        }
    }
}

/// Run the toy workload: a server and `clients` clients doing `requests`
/// appends each, a fault phase of `fault_ms`, heal, then a final power
/// loss of the server and a last recovery, read back from its disk. With
/// `ack_before_fsync` the server has a canary bug: it acknowledges a record
/// before syncing it.
pub async fn toy_workload(
    sim: Sim,
    clients: u32,
    requests: u64,
    fault_ms: u64,
    ack_before_fsync: bool,
) -> ToyReport {
    let net: Net<ToyMsg> = Net::new();
    let acks: Acks = Arc::default();
    let server_net = net.clone();
    let server_id = sim.spawn_process("server", move |ctx| {
        server(ctx, server_net.clone(), ack_before_fsync)
    });
    let mut ids = vec![server_id];
    for _ in 0..clients {
        let (net, acks) = (net.clone(), acks.clone());
        ids.push(sim.spawn_process("client", move |ctx| {
            client(ctx, net.clone(), server_id, requests, acks.clone())
        }));
    }
    sim.start_faults(&ids);
    sim.sleep(Duration::from_millis(fault_ms)).await;
    sim.heal();
    // Liveness: once healed, every client finishes within a bound.
    let mut clients_done = false;
    for _ in 0..2000 {
        if ids[1..].iter().all(|&c| sim.has_exited(c)) {
            clients_done = true;
            break;
        }
        sim.sleep(Duration::from_millis(5)).await;
    }
    sim.final_crash(&[server_id]);
    sim.sleep(Duration::from_millis(200)).await;
    let files = sim.disk_files(server_id);
    let (records, _) = parse(files.get(LOG).map_or(&[][..], Vec::as_slice));
    let recovered: BTreeSet<(u64, u64)> = records.into_iter().collect();
    let acked = acks.lock().map(|a| a.clone()).unwrap_or_default();
    let lost = acked.difference(&recovered).count();
    ToyReport {
        acked,
        recovered,
        lost,
        clients_done,
    }
}

/// Run the toy workload as a whole simulation (2 clients, 1 s of faults).
/// `tape` replays a recorded run.
pub fn run_toy(
    seed: u64,
    faults: FaultConfig,
    tape: Option<Tape>,
    requests: u64,
    trace: TraceMode,
) -> RunOutcome<ToyReport> {
    let mut config = RunConfig::new(seed)
        .faults(faults)
        .trace(trace)
        .disk(toy_disk());
    config.tape = tape;
    run(config, |sim| toy_workload(sim, 2, requests, 1000, false))
}
