//! Reliability: 100 rounds of SIGKILL at a random moment while dev-mode tasks are being submitted
//! and processed (SQLite), each followed by a restart on the same data directory. At the end
//! every task whose submission was acknowledged (202) must be done, with exactly one `done` and
//! one `delivering` in its history. Reports tasks lost, duplicated deliveries and failures.
//!
//! `ZKCOPROC_CRASH_ROUNDS` and `ZKCOPROC_CRASH_SEED` override the round count and the random seed
//! (printed, so a failing run can be replayed).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use zkcoproc_testing::{hello_app, poll, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

/// xorshift64*: deterministic from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn a_hundred_sigkills_under_load_lose_and_duplicate_nothing() {
    let rounds = env_u64("ZKCOPROC_CRASH_ROUNDS").unwrap_or(100);
    let seed = env_u64("ZKCOPROC_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    println!("crash suite: {rounds} rounds, seed {seed}");
    let mut rng = Rng(seed);
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // A modelled 20 ms proving cost keeps tasks in every stage when the kill lands.
    // The load is one client submitting as fast as it can; quotas are not what is tested here.
    let extra = ["--dev-delay-ms", "20", "--workers", "2", "--max-queued-per-identity", "1000000"];
    let program = {
        let server = Server::start(bin(), &data, "dev", &extra).expect("server");
        server.api().deploy(app).expect("deploy")
    };

    let mut acknowledged: Vec<String> = Vec::new();
    let mut unacknowledged = 0usize;
    for round in 0..rounds {
        let mut server = Server::start(bin(), &data, "dev", &extra).expect("server restarts");
        let api = server.api();
        let delay = Duration::from_millis(rng.below(400));
        let killed = Arc::new(AtomicBool::new(false));
        let killer = {
            let (pid, killed) = (server.pid(), killed.clone());
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                killed.store(true, Ordering::SeqCst);
            })
        };
        let mut i = 0;
        while !killed.load(Ordering::SeqCst) {
            let n = 1 + (round * 7 + i) % 50;
            match api.prove(&program, &json!({ "n": n })) {
                Ok(task) => acknowledged.push(task),
                Err(_) => unacknowledged += 1,
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(rng.below(30)));
        }
        let _ = killer.join();
        server.kill();
    }

    let server = Server::start(bin(), &data, "dev", &extra).expect("final start");
    let api = server.api();
    let (mut lost, mut duplicated, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for task in &acknowledged {
        let t: Value = match poll(Duration::from_secs(120), || {
            let (status, t) = api.get(&format!("/v1/tasks/{task}"))?;
            Ok(match status {
                404 => Some(Value::Null),
                _ if matches!(t["status"].as_str(), Some("done" | "failed" | "cancelled")) => Some(t),
                _ => None,
            })
        }) {
            Ok(t) => t,
            Err(e) => panic!("task {task} never finished: {e}\nlog:\n{}", server.log()),
        };
        if t.is_null() {
            lost.push(task.clone());
            continue;
        }
        if t["status"] != "done" {
            failed.push(format!("{task}: {}", t["error"]));
        }
        let count =
            |s: &str| t["history"].as_array().map_or(0, |h| h.iter().filter(|e| e["status"] == s).count());
        if count("done") > 1 || count("delivering") > 1 {
            duplicated.push(task.clone());
        }
    }
    println!(
        "crash suite: {rounds} SIGKILLs, {} tasks acknowledged ({unacknowledged} submissions cut off by a \
         kill), {} lost, {} duplicated deliveries, {} failed",
        acknowledged.len(),
        lost.len(),
        duplicated.len(),
        failed.len()
    );
    assert!(acknowledged.len() as u64 >= rounds, "too little load to mean anything");
    assert!(lost.is_empty(), "lost tasks: {lost:?}");
    assert!(duplicated.is_empty(), "duplicated deliveries: {duplicated:?}");
    // Being in flight at a few crashes is no reason to fail: the crash allowance is 10 per stage.
    assert!(failed.is_empty(), "failed tasks: {failed:?}");
}
