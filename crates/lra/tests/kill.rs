//! Killed anywhere, nothing lost, on the real binary: `lra run` killed with SIGKILL at seeded
//! pseudo-random instants (spread over start-up, training, evaluation, checkpoint and summary
//! writing) and resumed each time ends exactly like an uninterrupted run, with every file of its
//! folder readable and no temporary file left; SIGTERM and SIGINT checkpoint at the next step
//! boundary and exit with status 75, and the run resumes from there to the same end.
//!
//! `LRA_KILL_SEED=N` replays another set of instants (the seed is printed).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use burn::module::Module;
use lra::interrupt::EXIT_INTERRUPTED;
use lra::results::{MetricsRow, Summary};

mod common;
use common::stderr;

const STEPS: usize = 40;
/// SIGKILLs per run, one in each of as many equal slices of the uninterrupted run's timeline up
/// to its last checkpoint (start-up, training, evaluations, checkpoints)…
const KILLS: usize = 12;
/// …and these more in its final evaluation and summary writing.
const FINAL_KILLS: usize = 3;
const DEFAULT_SEED: u64 = 17;

/// `lra run` arguments of the run killed: [`STEPS`] steps, checkpointed every 4.
fn run_args(data: &Path, out: &Path) -> Vec<String> {
    common::tiny_listops_run(data, out, STEPS, 4)
}

fn lra(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lra"));
    command.args(args);
    command
}

/// The run folders under `out` (those that got as far as their config.toml).
fn run_folders(out: &Path) -> Vec<PathBuf> {
    let parent = out.join("listops/softmax");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&parent)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    runs.retain(|run| run.join("config.toml").is_file());
    runs.sort();
    runs
}

/// The kill test times an uninterrupted run to place its kills: the other tests here, which
/// also train, wait meanwhile.
fn one_test_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SplitMix64: a few reproducible draws in [0, 1) without depending on a RNG crate's API.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64)
    }
}

/// When an uninterrupted run reached its phases, from the start of the process.
struct Timeline {
    /// Data loaded, training about to start (`run …` line).
    started: Duration,
    /// Last step's evaluation and checkpoint done (last `step …` line).
    trained: Duration,
    /// Summary written, process ended.
    ended: Duration,
}

impl Timeline {
    /// Where a run that has a checkpoint of `step` stands on this timeline.
    fn position_of_checkpoint(&self, step: usize) -> Duration {
        self.started + (self.trained - self.started).mul_f64(step as f64 / STEPS as f64)
    }
}

/// Runs `args` to the end (stderr not quiet, so phases can be timed) and times its phases.
fn timed_run(args: &[String]) -> Timeline {
    let begun = Instant::now();
    let mut child = lra(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, lines) = mpsc::channel();
    let reader = BufReader::new(child.stderr.take().unwrap());
    let pump = std::thread::spawn(move || {
        for line in reader.lines() {
            let _ = sender.send((begun.elapsed(), line.unwrap()));
        }
    });
    let status = child.wait().unwrap();
    let ended = begun.elapsed();
    pump.join().unwrap();
    let lines: Vec<(Duration, String)> = lines.into_iter().collect();
    assert!(status.success(), "{lines:?}");
    let at = |prefix: &str| {
        lines
            .iter()
            .rev()
            .find(|(_, line)| line.starts_with(prefix))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("no `{prefix}` line in {lines:?}"))
    };
    Timeline {
        started: at("run "),
        trained: at("step "),
        ended,
    }
}

/// The step of the checkpoint a resumed run would continue from (0: none yet).
fn checkpoint_step(run: Option<&PathBuf>) -> usize {
    run.and_then(|run| {
        lra::checkpoint::find(&run.join("checkpoint"))
            .ok()
            .flatten()
    })
    .map_or(0, |checkpoint| checkpoint.state.step)
}

/// Waits up to `limit` for `child`; kills it (SIGKILL) if it is still running then. Whether it
/// was killed.
fn kill_after(child: &mut Child, limit: Duration) -> bool {
    let begun = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if begun.elapsed() >= limit {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `summary.json` as JSON, without what differs between two runs of the same config: timing,
/// the folder.
fn comparable_summary(run: &Path) -> serde_json::Value {
    let text = std::fs::read(run.join("summary.json")).unwrap();
    let typed: Summary = serde_json::from_slice(&text).unwrap();
    assert_eq!(typed.steps, STEPS);
    let mut json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let fields = json.as_object_mut().unwrap();
    for timing in ["train_seconds", "tokens_per_second", "run_dir"] {
        fields.remove(timing).expect("summary field");
    }
    json
}

/// `metrics.csv` without its timing column.
fn comparable_metrics(run: &Path) -> Vec<MetricsRow> {
    let mut rows = lra::results::read_metrics(&run.join("metrics.csv")).unwrap();
    for row in &mut rows {
        row.tokens_per_second = 0.0;
    }
    rows
}

/// Every file of a finished run folder is there and reads back: the config, the metrics, the
/// summary, the checkpoint (checksums, state, model and optimiser) and the best model; nothing
/// else is left (no temporary file, no half-swapped checkpoint folder) but the files in `also`.
fn assert_complete_and_readable(run: &Path, also: &[&str]) {
    let names: BTreeSet<String> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut expected: BTreeSet<String> = [
        "best_model.bpk",
        "checkpoint",
        "config.toml",
        "metrics.csv",
        "summary.json",
    ]
    .map(String::from)
    .into();
    expected.extend(also.iter().map(|name| name.to_string()));
    assert_eq!(names, expected, "{}", run.display());
    let checkpoint_files: BTreeSet<String> = std::fs::read_dir(run.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        checkpoint_files,
        ["checksums.json", "model.bpk", "optimizer.bpk", "state.json"]
            .map(String::from)
            .into()
    );

    let config = lra::config::load_file(&run.join("config.toml")).unwrap();
    let data = lra::task::load(&config.task, true).unwrap();
    let objective = config.task.task().unwrap().objective();
    let device = lra::device::parse("cpu").unwrap();
    let model = || {
        config
            .classifier(data.vocab_size, objective.outputs())
            .unwrap()
            .init(&device.clone().autodiff())
    };
    let checkpoint = lra::checkpoint::find(&run.join("checkpoint"))
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.state.step, STEPS);
    checkpoint.restore_model(model()).unwrap();
    checkpoint
        .restore_optimizer(lra::train::optimizer(&config.train, &device).unwrap())
        .unwrap();
    model().try_load_file(run.join("best_model.bpk")).unwrap();
    let rows = lra::results::read_metrics(&run.join("metrics.csv")).unwrap();
    assert_eq!(checkpoint.state.history, rows);
}

/// Kills a run at the instants drawn from `draws` (see [`KILLS`], [`FINAL_KILLS`]), resuming it
/// each time, then resumes it to the end; checks that it equals `reference`, that its folder is
/// complete and readable, and that a folder a kill left behind holds nothing a run would trust.
/// Returns the kills: (step resumed from, delay of the kill).
fn kill_and_resume(
    data: &Path,
    out: &Path,
    timeline: &Timeline,
    draws: &mut Draws,
    reference: &Path,
) -> Vec<(usize, Duration)> {
    let fresh = run_args(data, out);
    let mut kills = Vec::new();
    let mut finished = false;
    let final_phase = timeline.ended - timeline.trained;
    let mut targets: Vec<Duration> = (0..KILLS)
        .map(|slice| {
            timeline
                .trained
                .mul_f64((slice as f64 + draws.next()) / KILLS as f64)
        })
        .collect();
    targets.extend((0..FINAL_KILLS).map(|_| timeline.trained + final_phase.mul_f64(draws.next())));
    for target in targets {
        // The instant `target` of the uninterrupted timeline, reached from the checkpoint the
        // resumed run starts from (each process first loads the data again).
        let runs = run_folders(out);
        // A kill that landed after the summary was written found a finished run.
        if runs
            .first()
            .is_some_and(|run| run.join("summary.json").exists())
        {
            finished = true;
            break;
        }
        let from = checkpoint_step(runs.first());
        let reached = timeline.position_of_checkpoint(from);
        let delay = if target > reached {
            timeline.started + (target - reached)
        } else {
            timeline.started.mul_f64(draws.next())
        };
        let mut command = match runs.first() {
            Some(run) => lra(&["run".into(), "--resume".into(), run.display().to_string()]),
            None => lra(&fresh),
        };
        let mut child = command
            .arg("--quiet")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if !kill_after(&mut child, delay) {
            finished = true;
            break;
        }
        kills.push((from, delay));
    }
    println!(
        "killed {} times: (resumed from step, killed after) {kills:?}",
        kills.len()
    );
    let runs = run_folders(out);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    if !finished && !run.join("summary.json").exists() {
        let last = lra(&["run".into(), "--resume".into(), run.display().to_string()])
            .arg("--quiet")
            .output()
            .unwrap();
        assert!(last.status.success(), "{}", stderr(&last));
    }
    // A folder a kill left before its config.toml was in place holds nothing a run would trust
    // (at most that file's temporary copy), and is never resumed.
    for entry in std::fs::read_dir(out.join("listops/softmax")).unwrap() {
        let path = entry.unwrap().path();
        if &path != run {
            for file in std::fs::read_dir(&path).unwrap() {
                let name = file.unwrap().file_name().to_string_lossy().into_owned();
                assert!(name.starts_with(".config.toml.tmp-"), "{path:?}: {name}");
            }
        }
    }

    assert_complete_and_readable(run, &[]);
    assert_eq!(comparable_metrics(run), comparable_metrics(reference));
    assert_eq!(comparable_summary(run), comparable_summary(reference));
    kills
}

#[test]
fn a_run_killed_at_random_instants_and_resumed_ends_like_an_uninterrupted_one() {
    let _alone = one_test_at_a_time();
    let seed = std::env::var("LRA_KILL_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("LRA_KILL_SEED is a number"))
        .unwrap_or(DEFAULT_SEED);
    println!("LRA_KILL_SEED={seed}");
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");

    // The reference run (which generates the data, so it is timed on a second one).
    let reference_out = root.path().join("reference");
    let reference_args = run_args(&data, &reference_out);
    let generated = lra(&reference_args).arg("--quiet").output().unwrap();
    assert!(generated.status.success(), "{}", stderr(&generated));
    let reference = run_folders(&reference_out)[0].clone();
    let timeline = timed_run(&run_args(&data, &root.path().join("timed")));
    println!(
        "uninterrupted: start-up {:?}, training {:?}, final evaluation {:?}",
        timeline.started,
        timeline.trained - timeline.started,
        timeline.ended - timeline.trained
    );

    // A machine faster than the timed run finishes a run before its kills: it is checked all the
    // same, and the next draws kill a fresh run.
    let mut draws = Draws(seed);
    let mut kills = Vec::new();
    for attempt in 0..3 {
        let out = root.path().join(format!("killed-{attempt}"));
        kills = kill_and_resume(&data, &out, &timeline, &mut draws, &reference);
        if kills.len() >= 10 {
            break;
        }
    }
    assert!(
        kills.len() >= 10,
        "only {} kills landed: {kills:?}",
        kills.len()
    );
}

/// Starts `args`, waits until its checkpoint has passed step 6, then sends `signal` (by the
/// `kill` command); returns the output.
fn signal_midway(args: &[String], run_parent: &Path, signal: &str) -> Output {
    let child = lra(args)
        .arg("--quiet")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let begun = Instant::now();
    while checkpoint_step(run_folders(run_parent).first()) < 6 {
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "no checkpoint came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait_with_output().unwrap()
}

#[test]
fn sigterm_and_sigint_checkpoint_exit_75_and_the_run_resumes_to_the_same_end() {
    let _alone = one_test_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let reference_out = root.path().join("reference");
    let done = lra(&run_args(&data, &reference_out))
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    let reference = run_folders(&reference_out)[0].clone();

    let out = root.path().join("signalled");
    let terminated = signal_midway(&run_args(&data, &out), &out, "-TERM");
    assert_eq!(
        terminated.status.code(),
        Some(EXIT_INTERRUPTED),
        "{}",
        stderr(&terminated)
    );
    let run = run_folders(&out)[0].clone();
    let step = checkpoint_step(Some(&run));
    let said = String::from_utf8_lossy(&terminated.stdout).into_owned();
    assert!(
        said.contains(&format!("checkpoint of step {step} written")) && step < STEPS,
        "{said}"
    );
    assert!(!run.join("summary.json").exists());

    // Ctrl-C on the resumed run, then a resume to the end.
    let resume: Vec<String> = ["run", "--resume", &run.display().to_string()]
        .map(String::from)
        .to_vec();
    let child = lra(&resume)
        .arg("--quiet")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let begun = Instant::now();
    while checkpoint_step(Some(&run)) <= step {
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "no checkpoint came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let interrupted = child.wait_with_output().unwrap();
    let finished_already = interrupted.status.success();
    assert!(
        finished_already || interrupted.status.code() == Some(EXIT_INTERRUPTED),
        "{}",
        stderr(&interrupted)
    );
    if !finished_already {
        let last = lra(&resume).arg("--quiet").output().unwrap();
        assert!(last.status.success(), "{}", stderr(&last));
    }
    assert_complete_and_readable(&run, &[]);
    assert_eq!(comparable_metrics(&run), comparable_metrics(&reference));
    assert_eq!(comparable_summary(&run), comparable_summary(&reference));
}

/// The job script `lra sweep --slurm` writes, run as Slurm would run an array task (with a
/// stand-in `scontrol` that records its arguments): SIGTERM to the job's shell reaches `lra`,
/// which checkpoints and exits with 75, and the script re-queues the task; its next start
/// finishes the cell.
#[test]
fn the_slurm_script_requeues_a_preempted_task_and_its_next_start_finishes_the_cell() {
    let _alone = one_test_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let quoted = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let sets: Vec<String> = run_args(&root.path().join("data"), root.path())
        .windows(2)
        .filter(|pair| pair[0] == "--set")
        .map(|pair| format!("{:?}", pair[1]))
        .collect();
    let file = root.path().join("sweep.toml");
    std::fs::write(
        &file,
        format!(
            "preset = \"tiny\"\ntasks = [\"listops\"]\nseeds = [0]\nout = {}\n\
             set = [{}, \"task.data_dir={}\", \"train.steps={STEPS}\"]\n\
             [[row]]\nname = \"Transformer\"\nattention = \"softmax\"\n",
            quoted(&root.path().join("out")),
            sets.join(", "),
            root.path().join("data").display()
        ),
    )
    .unwrap();
    let written = Command::new(env!("CARGO_BIN_EXE_lra"))
        .args(["sweep", &file.display().to_string(), "--slurm"])
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(written.status.success(), "{}", stderr(&written));
    let script = String::from_utf8(written.stdout)
        .unwrap()
        .trim()
        .to_string();

    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let requeues = root.path().join("scontrol.log");
    let scontrol = bin.join("scontrol");
    std::fs::write(
        &scontrol,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", requeues.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&scontrol, std::fs::Permissions::from_mode(0o755)).unwrap();
    let task = || {
        Command::new("bash")
            .arg(&script)
            .env("SLURM_ARRAY_TASK_ID", "0")
            .env("SLURM_JOB_ID", "4242")
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    let cell = root.path().join("out/listops/transformer/s0");
    let shell = task();
    let begun = Instant::now();
    while checkpoint_step(Some(&cell)) < 6 {
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "no checkpoint came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Only the job's shell is signalled: it passes the signal on.
    let sent = Command::new("kill")
        .args(["-TERM", &shell.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let preempted = shell.wait_with_output().unwrap();
    assert_eq!(
        preempted.status.code(),
        Some(EXIT_INTERRUPTED),
        "{}",
        stderr(&preempted)
    );
    assert_eq!(
        std::fs::read_to_string(&requeues).unwrap(),
        "requeue 4242\n"
    );
    let step = checkpoint_step(Some(&cell));
    assert!((6..STEPS).contains(&step), "checkpoint of step {step}");
    assert!(!cell.join("summary.json").exists());

    let requeued = task().wait_with_output().unwrap();
    assert!(requeued.status.success(), "{}", stderr(&requeued));
    assert_complete_and_readable(&cell, &[".claim.lock"]);
    assert_eq!(
        std::fs::read_to_string(&requeues).unwrap(),
        "requeue 4242\n",
        "a finished task is not re-queued"
    );
}
