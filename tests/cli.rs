//! The `durasim` binary: exit codes, bad input, and snapshots of what users
//! read (`--help`, the sweep table, a shrink story).
//!
//! Index: bad input exits 2 with a clear message and writes nothing;
//! a passing run exits 0 and a failing one 1; corpus collisions never
//! overwrite; snapshots of help, the summary table and the canary's story.

use std::path::PathBuf;
use std::process::{Command, Output};

use durasim::harness::{run_seed, shrink, sweep, RunParams, RunSpec, SweepPlan};
use durasim::scenarios;
use durasim_sim::Profile;

fn durasim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_durasim"))
        .args(args)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("durasim-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn canary_spec(seed: u64) -> RunSpec {
    let scenario = scenarios::find("toy-log").expect("registered");
    let mut spec = RunSpec::new(scenario, seed, Profile::Swarm);
    spec.params.bugs.insert("toy-ack-before-fsync".into());
    spec
}

/// The canary's first failing swarm seed, found one run at a time.
fn first_canary_failure() -> u64 {
    let scenario = scenarios::find("toy-log").expect("registered");
    (0..200)
        .find(|&seed| {
            !run_seed(scenario, &canary_spec(seed), None)
                .verdict
                .passed()
        })
        .expect("the canary fails within 200 seeds")
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--scenario", "nope", "--seed", "1"],
            "unknown scenario `nope`",
        ),
        (
            &[
                "run",
                "--scenario",
                "toy-log",
                "--seed",
                "1",
                "--bug",
                "nope",
            ],
            "unknown bug `nope`",
        ),
        (&["sweep", "--seeds", "9..3"], "bad seed range `9..3`"),
        (&["sweep", "--seeds", "lots"], "bad seed range `lots`"),
        (&["sweep", "--shard", "3/2"], "bad shard `3/2`"),
        (&["sweep", "--shard", "x"], "bad shard `x`"),
        (
            &[
                "run",
                "--scenario",
                "toy-log",
                "--seed",
                "1",
                "--profile",
                "stormy",
            ],
            "unknown profile",
        ),
        (&["replay", "/nonexistent/entry.json"], "cannot read"),
    ];
    for (args, expected) in cases {
        let out = durasim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
}

#[test]
fn a_malformed_corpus_file_names_the_file_and_the_field() {
    let dir = scratch("malformed");
    let scenario_dir = dir.join("toy-log");
    std::fs::create_dir_all(&scenario_dir).expect("dir");
    let bad = scenario_dir.join("broken.json");
    std::fs::write(&bad, r#"{"schema": 1, "scenario": "toy-log"}"#).expect("write");
    let out = durasim(&["corpus", "check", "--corpus", dir.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("broken.json") && err.contains("missing field"),
        "{err}"
    );

    std::fs::write(&bad, "{ not json").expect("write");
    let out = durasim(&["replay", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.json"), "{}", stderr(&out));

    let canary = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/toy-log/toy-ack-before-fsync.json"),
    )
    .expect("canary entry");
    std::fs::write(&bad, canary.replace("\"schema\": 1", "\"schema\": 99")).expect("write");
    let out = durasim(&["replay", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("field `schema`"), "{}", stderr(&out));
}

#[test]
fn corpus_add_refuses_to_overwrite_an_entry() {
    let dir = scratch("collision");
    let root = dir.to_str().expect("utf8");
    let add = |name: &str| {
        durasim(&[
            "corpus",
            "add",
            "--scenario",
            "toy-log",
            "--seed",
            "3",
            "--profile",
            "none",
            "--size",
            "2",
            "--name",
            name,
            "--description",
            "a passing run",
            "--corpus",
            root,
        ])
    };
    let first = add("kept");
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let path = dir.join("toy-log/kept.json");
    let before = std::fs::read(&path).expect("entry written");
    let again = add("kept");
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(&path).expect("still there"),
        before,
        "entry unchanged"
    );
    let bad_name = add("../escape");
    assert_eq!(bad_name.status.code(), Some(2));
}

#[test]
fn a_passing_run_exits_0_and_a_failing_one_exits_1() {
    let pass = durasim(&[
        "run",
        "--scenario",
        "toy-log",
        "--seed",
        "5",
        "--profile",
        "chaos",
    ]);
    assert_eq!(pass.status.code(), Some(0), "{}", stderr(&pass));
    let seed = first_canary_failure().to_string();
    let fail = durasim(&[
        "run",
        "--scenario",
        "toy-log",
        "--seed",
        &seed,
        "--profile",
        "swarm",
        "--bug",
        "toy-ack-before-fsync",
    ]);
    assert_eq!(fail.status.code(), Some(1), "{}", stderr(&fail));
    let stdout = String::from_utf8_lossy(&fail.stdout);
    assert!(stdout.contains("D1 violated"), "{stdout}");
    let det = durasim(&[
        "run",
        "--scenario",
        "toy-log",
        "--seed",
        "7",
        "--profile",
        "chaos",
        "--check-determinism",
    ]);
    assert_eq!(det.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&det.stdout).contains("deterministic: both runs"));
}

#[test]
fn sweep_json_lines_merge_across_shards() {
    let lines = |shard: &str| {
        let out = durasim(&[
            "sweep",
            "--scenario",
            "toy-log",
            "--seeds",
            "0..12",
            "--profile",
            "chaos",
            "--shard",
            shard,
            "--json",
            "--jobs",
            "1",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<durasim::harness::SeedLine>(l).expect("a JSON line"))
            .collect::<Vec<_>>()
    };
    let mut merged: Vec<_> = lines("1/2").into_iter().chain(lines("2/2")).collect();
    merged.sort_by_key(|l| l.seed);
    let whole = lines("1/1");
    assert_eq!(merged, whole);
    assert_eq!(whole.len(), 12);
}

#[test]
fn help_text_snapshot() {
    let out = durasim(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("help", String::from_utf8_lossy(&out.stdout));
    let out = durasim(&["sweep", "--help"]);
    insta::assert_snapshot!("sweep_help", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn sweep_summary_table_snapshot() {
    let scenario = scenarios::find("toy-log").expect("registered");
    let plan = SweepPlan {
        scenario,
        seeds: (0..40).collect(),
        profile: Profile::Chaos,
        params: RunParams {
            size: 10,
            bugs: Default::default(),
        },
        jobs: 2,
        watchdog: std::time::Duration::from_secs(60),
    };
    let (_, mut summary) = sweep(&plan, &|_| {});
    // Everything in the table is deterministic except the wall clock.
    summary.wall_secs = 1.0;
    insta::assert_snapshot!(
        "sweep_table",
        summary.table("toy-log — profile chaos, seeds 0..40")
    );
}

#[test]
fn shrink_story_snapshot() {
    let scenario = scenarios::find("toy-log").expect("registered");
    let spec = canary_spec(first_canary_failure());
    let failing = run_seed(scenario, &spec, None);
    let shrunk = shrink(scenario, &spec, &failing).expect("shrinks");
    insta::assert_snapshot!(
        "shrink_story",
        format!("{}\n{}", shrunk.headline(), shrunk.render_story())
    );
}
