//! The hostile-controller catalogue: each misbehaving controller fails its own task with the
//! right error code while a well-behaved task submitted alongside completes, and the service
//! keeps serving.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use zkcoproc_testing::{hello_app, hostile_controller, Api, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

fn submit(api: &Api, program: &str, args: &Value) -> String {
    api.prove(program, args).expect("prove")
}

#[test]
fn each_hostile_controller_fails_its_own_task_and_good_tasks_complete() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Tight limits keep the catalogue fast; the defaults are ten times looser.
    let limits = [
        "--controller-timeout-ms",
        "3000",
        "--controller-fuel",
        "2000000000",
        "--controller-memory-mb",
        "160",
        "--controller-host-calls",
        "20000",
        "--workers",
        "2",
    ];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &limits).expect("server");
    let api = server.api();
    let program = api.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy hostile");
    let good = api.deploy(hello_app()).expect("deploy hello");

    let cases: &[(Value, &str, &str)] = &[
        (json!({"mode": "loop"}), "controller_timeout", "fuel"),
        (json!({"mode": "memory"}), "controller_out_of_memory", "memory limit"),
        (json!({"mode": "big-output"}), "controller_output_too_large", "exceeds the limit"),
        (json!({"mode": "recursion"}), "controller_trap", "wasm trap"),
        (json!({"mode": "host-calls"}), "controller_timeout", "host-call"),
        (json!({"mode": "sleep"}), "controller_timeout", "wall-clock"),
        (json!({"mode": "sleep-loop"}), "controller_timeout", "wall-clock"),
        (json!({"mode": "clock-spin"}), "controller_timeout", ""),
        (json!({"mode": "sleep-entrypoint"}), "controller_timeout", "wall-clock"),
        (json!({"mode": "many-witnesses"}), "too_many_witnesses", "5000 witnesses"),
        (json!({"mode": "forged-evm-call"}), "controller_bad_output", "EVM call 0 was not made in this call"),
        (json!({"mode": "bad-result"}), "controller_bad_output", "not JSON"),
        (json!({"mode": "trap-entrypoint"}), "controller_trap", "trapped"),
        (json!({"mode": "write", "path": "/../../etc/x"}), "controller_error", "vfs_invalid_path"),
        (json!({"mode": "write", "path": "/averyverylongname.txt"}), "controller_error", "vfs_invalid_path"),
        (json!({"mode": "write", "path": "/bad*char.txt"}), "controller_error", "vfs_invalid_path"),
        (
            json!({"mode": "write", "path": "/huge.bin", "size": 6_000_000}),
            "controller_error",
            "vfs_too_large",
        ),
    ];
    // Interleave: every hostile task has a well-behaved task of another program beside it, and
    // one of its own program.
    let mut hostile = Vec::new();
    let mut fine = Vec::new();
    for (args, code, needle) in cases {
        hostile.push((submit(&api, &program, args), *code, *needle, args.clone()));
        fine.push(submit(&api, &good, &json!({"n": 3})));
    }
    fine.push(submit(&api, &program, &json!({"mode": "ok"})));

    for (task, code, needle, args) in &hostile {
        let t = api.wait_task(task, Duration::from_secs(120)).expect("hostile task ends");
        assert_eq!(t["status"], "failed", "{args}: {t}");
        assert_eq!(t["error"]["code"], *code, "{args}: {t}");
        let message = t["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{args}: `{message}` lacks `{needle}`");
    }
    for task in &fine {
        let t = api.wait_task(task, Duration::from_secs(120)).expect("good task ends");
        assert_eq!(t["status"], "done", "{t}\nlog:\n{}", server.log());
    }
    let (status, health) = api.get("/health").expect("health");
    assert_eq!(status, 200, "{health}");

    // The failure reached the entrypoint (status failed), whose result is stored.
    let t = api.wait_task(&hostile[0].0, Duration::from_secs(5)).expect("task");
    assert_eq!(t["result"], json!({"status": "failed"}), "{t}");
}

/// Controllers that block in WASI (sleep, poll on a clock) end at their wall-clock deadline like
/// any other: a burst of sleeping dry runs neither outlives the deadline nor stalls the service.
#[test]
fn sleeping_controllers_end_at_their_deadline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Eight API slots, so that one client may hold all six (one caller never holds the last
    // free slot); the two controller slots (one per core) are what the calls wait for.
    let args = ["--controller-timeout-ms", "1000", "--max-dry-runs", "8"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &args).expect("server");
    let api = server.api();
    let program = api.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy");
    let started = std::time::Instant::now();
    let sleepers: Vec<_> = (0..6)
        .map(|_| {
            let api = api.clone();
            let program = program.clone();
            std::thread::spawn(move || {
                let t = std::time::Instant::now();
                let (status, v) = api
                    .post(&format!("/v1/programs/{program}/witnesses"), &json!({"args": {"mode": "sleep"}}))
                    .expect("dry run");
                (status, v, t.elapsed())
            })
        })
        .collect();
    for s in sleepers {
        let (status, v, took) = s.join().expect("sleeper");
        assert_eq!((status, v["error"]["code"].as_str()), (422, Some("controller_timeout")), "{v}");
        // Six 1 s calls on two controller slots: three rounds, plus margin.
        assert!(took < Duration::from_secs(6), "a sleeping dry run took {took:?}");
    }
    let (status, v) = api
        .post(&format!("/v1/programs/{program}/witnesses"), &json!({"args": {"mode": "ok"}}))
        .expect("dry run");
    assert_eq!(status, 200, "{v}");
    println!("6 sleeping dry runs and one good one: {:.2} s", started.elapsed().as_secs_f64());
}
