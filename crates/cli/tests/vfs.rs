//! The per-program FAT-16 volume through the service: proof delivery into it, the fs API and
//! CLI, concurrent writers, a full volume, SIGKILL mid-write, and independent FAT readers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use zkcoproc_testing::{hello_app, hostile_controller, poll, Api, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

/// `fs ls` through the API: name → size.
fn listing(api: &Api, program: &str, dir: &str) -> BTreeMap<String, u64> {
    let (status, body) = api.get(&format!("/v1/programs/{program}/fs?path={dir}")).expect("list");
    assert_eq!(status, 200, "{body}");
    body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), e["size"].as_u64().unwrap_or(0)))
        .collect()
}

/// Exports the program's image and checks it with fsck.fat (read-only).
fn fsck(server: &Server, program: &str, dir: &Path) -> String {
    let img = dir.join(format!("{program}.img"));
    let out = Command::new(bin())
        .args(["fs", "export", program, "--server", &server.url])
        .arg(&img)
        .output()
        .expect("fs export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = Command::new("fsck.fat").arg("-n").arg(&img).output().expect("fsck.fat (dosfstools)");
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.status.success(), "fsck.fat: {report}{}", String::from_utf8_lossy(&check.stderr));
    report
}

#[test]
fn proofs_are_delivered_into_the_volume_and_readable_through_api_and_cli() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let program = api.deploy(hello_app()).expect("deploy");

    // A fresh program has an empty, valid volume.
    assert!(listing(&api, &program, "/").is_empty());

    let task = api.prove(&program, &json!({"n": 4})).expect("prove");
    let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "done", "{t}");
    // The receipt is stored under an 8.3 name made of 55 bits of the task id.
    let path = t["result"]["receipt"].as_str().expect("receipt path").to_owned();
    let name = path.strip_prefix("/var/share/proofs/").expect("in /var/share/proofs").to_owned();
    let (stem, ext) = name.split_once('.').expect("8.3 name");
    assert_eq!((stem.len(), ext.len()), (8, 3), "{name}");

    let (_, proof) = api.get(&format!("/v1/tasks/{task}/proof")).expect("proof");
    let receipt = base64::engine::general_purpose::STANDARD
        .decode(proof["receipt"].as_str().expect("receipt"))
        .expect("base64");
    let files = listing(&api, &program, "/VAR/SHARE/PROOFS");
    assert_eq!(files.get(&name.to_uppercase()), Some(&(receipt.len() as u64)));

    // The CLI reads the same bytes, case-insensitively.
    let out = Command::new(bin())
        .args(["fs", "cat", &program, &path.to_uppercase(), "--server", &server.url])
        .output()
        .expect("fs cat");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, receipt);
    let out = Command::new(bin())
        .args(["fs", "ls", &program, "/var/share/proofs", "--server", &server.url])
        .output()
        .expect("fs ls");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name.to_uppercase()));

    // Bad paths and missing files get clear errors.
    let (status, body) =
        api.get(&format!("/v1/programs/{program}/fs/var/..%2F..%2Fetc/passwd")).expect("get");
    assert!(status == 400 || status == 404, "{status} {body}");
    let (status, body) = api.get(&format!("/v1/programs/{program}/fs/nothere.txt")).expect("get");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("vfs_not_found")));
    let (status, body) = api.get(&format!("/v1/programs/{program}/fs?path=/averyverylongdir")).expect("get");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("vfs_invalid_path")));

    // A failed task reaches the entrypoint too, which records it.
    let failed = api.prove(&program, &json!({"n": 0})).expect("prove");
    let t = api.wait_task(&failed, Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "failed");
    let log_path = t["result"]["failure_log"].as_str().expect("failure recorded").to_owned();
    let (status, _) = api.get(&format!("/v1/programs/{program}/fs{log_path}")).expect("read log");
    assert_eq!(status, 200);

    // A dry run sees the volume but cannot change it.
    let hostile = api.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy");
    let (status, _) = api
        .post(
            &format!("/v1/programs/{hostile}/witnesses"),
            &json!({"args": {"mode": "write", "path": "/dry.txt"}}),
        )
        .expect("dry run");
    assert_eq!(status, 200);
    assert!(listing(&api, &hostile, "/").is_empty(), "a dry run wrote to the volume");

    // The stored image is a valid FAT-16 volume to independent readers.
    let report = fsck(&server, &program, tmp.path());
    assert!(report.contains("files"), "{report}");
    let img = tmp.path().join(format!("{program}.img"));
    let mtype = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .arg(format!("::{}", path.to_uppercase()))
        .output()
        .expect("mtype (mtools)");
    assert!(mtype.status.success(), "{}", String::from_utf8_lossy(&mtype.stderr));
    assert_eq!(mtype.stdout, receipt);
}

#[test]
fn fifty_concurrent_writers_lose_no_file_and_a_full_volume_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = ["--workers", "4", "--volume-size-mb", "4"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &extra).expect("server");
    let api = server.api();
    let program = api.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy");

    let tasks: Vec<String> = (0..50)
        .map(|i| {
            api.prove(&program, &json!({"mode": "write", "path": format!("/w/f{i}.txt"), "size": 1000 + i}))
                .expect("prove")
        })
        .collect();
    for task in &tasks {
        let t = api.wait_task(task, Duration::from_secs(120)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
    }
    let files = listing(&api, &program, "/w");
    assert_eq!(files.len(), 50, "{files:?}");
    for i in 0..50u64 {
        assert_eq!(files.get(&format!("F{i}.TXT")), Some(&(1000 + i)), "F{i}.TXT");
    }

    // Fill the 4 MiB volume with 1 MB files: the write that does not fit fails with vfs_full,
    // and every earlier file is intact.
    let mut written = 0;
    let error = loop {
        let task = api
            .prove(
                &program,
                &json!({"mode": "write", "path": format!("/big/b{written}.bin"), "size": 1_000_000}),
            )
            .expect("prove");
        let t = api.wait_task(&task, Duration::from_secs(60)).expect("task");
        if t["status"] != "done" {
            break t;
        }
        written += 1;
        assert!(written < 10, "a 4 MiB volume took {written} MB");
    };
    assert_eq!(error["error"]["code"], "controller_error", "{error}");
    assert!(error["error"]["message"].as_str().unwrap_or_default().contains("vfs_full"), "{error}");
    assert!(written >= 2, "only {written} files fit");
    let big = listing(&api, &program, "/big");
    assert_eq!(big.len(), written);
    assert!(big.values().all(|&size| size == 1_000_000), "{big:?}");
    assert_eq!(listing(&api, &program, "/w").len(), 50);
    fsck(&server, &program, tmp.path());
}

#[test]
fn the_volume_survives_sigkill_mid_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let extra = ["--workers", "2"];
    let mut server = Server::start(bin(), &data, "dev", &extra).expect("server");
    let api = server.api();
    let program = api.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy");
    let size = 400_000u64; // 30 files fill 12 of the 16 MiB
    let tasks: Vec<String> = (0..30)
        .map(|i| {
            api.prove(&program, &json!({"mode": "write", "path": format!("/k/f{i}.bin"), "size": size}))
                .expect("prove")
        })
        .collect();
    poll(Duration::from_secs(60), || {
        let (_, h) = api.get("/health")?;
        Ok((h["tasks"]["done"].as_u64().unwrap_or(0) >= 2).then_some(()))
    })
    .expect("some writes land");
    server.kill();

    let server = Server::start(bin(), &data, "dev", &extra).expect("restart");
    let api = server.api();
    // Whatever was committed before the kill is a valid volume with whole files only.
    fsck(&server, &program, tmp.path());
    let before = listing(&api, &program, "/k");
    assert!(before.len() < 30, "the kill must land with writes still to do");
    assert!(before.values().all(|&s| s == size), "a partial file survived: {before:?}");
    for task in &tasks {
        let t = api.wait_task(task, Duration::from_secs(120)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
    }
    let files = listing(&api, &program, "/k");
    assert_eq!(files.len(), 30);
    assert!(files.values().all(|&s| s == size), "{files:?}");
    fsck(&server, &program, tmp.path());
}

/// An export streams the volume as it was when it started, however many versions are committed
/// while its client reads: its version is pinned, not taken away by the next 16 commits.
#[test]
fn an_export_reads_one_version_while_writes_go_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 64 MiB: more than a client and the sockets between hold, so most of the image is read from
    // the store after the writes below.
    let extra = ["--volume-size-mb", "64", "--export-idle-ms", "600000"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &extra).expect("server");
    let api = server.api();
    let program = api.deploy_files(hostile_controller(), &hello_app().circuit).expect("deploy");
    let write = |path: String| {
        let task =
            api.prove(&program, &json!({"mode": "write", "path": path, "size": 100_000})).expect("prove");
        let t = api.wait_task(&task, Duration::from_secs(120)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
    };
    write("/a/first.bin".into());
    let http = reqwest::blocking::Client::builder().timeout(None).build().expect("client");
    let url = format!("{}/v1/programs/{program}/volume", server.url);
    let before = http.get(&url).send().expect("export").bytes().expect("image");
    assert_eq!(before.len(), 64 << 20);

    // A second export whose client takes 64 KiB, then nothing while 20 versions are committed.
    let mut export = http.get(&url).send().expect("export");
    assert_eq!(export.status(), 200);
    let mut during = vec![0u8; 64 << 10];
    std::io::Read::read_exact(&mut export, &mut during).expect("the first bytes");
    for i in 0..20 {
        write(format!("/b/f{i}.bin"));
    }
    std::io::Read::read_to_end(&mut export, &mut during).expect("the rest of the export");
    assert_eq!(during.len(), before.len());
    assert!(during == before[..], "the export is not the volume as it was when it started");
    assert_eq!(listing(&api, &program, "/b").len(), 20, "the writes landed meanwhile");
}

/// The value of a counter in `/metrics` (0 when absent).
fn counter(server: &Server, name: &str) -> u64 {
    let text =
        reqwest::blocking::get(format!("{}/metrics", server.url)).expect("metrics").text().expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A program asks for a 1 GiB volume at deploy: files written across several tasks read back
/// through the API, the streamed export is the whole GiB and passes fsck.fat and mtools, and a
/// `get-witnesses` call that never touches `fs` reads no volume at all.
#[test]
fn a_one_gib_volume_chosen_at_deploy_is_written_read_back_and_exported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    let b64 = base64::engine::general_purpose::STANDARD;
    let deploy = |mb: u64| {
        let body = json!({
            "controller": b64.encode(std::fs::read(hostile_controller()).expect("controller")),
            "circuit": b64.encode(std::fs::read(&hello_app().circuit).expect("circuit")),
            "volume_size_mb": mb,
        });
        api.post("/v1/programs", &body).expect("deploy")
    };
    // Beyond the operator's maximum (2000 MiB by default), or not a FAT-16 size: refused.
    for mb in [2001, 3] {
        let (status, body) = deploy(mb);
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_volume_size")), "{mb}: {body}");
    }
    let (status, body) = deploy(1024);
    assert_eq!(status, 201, "{body}");
    let program = body["program_id"].as_str().expect("id").to_owned();
    let (_, info) = api.get(&format!("/v1/programs/{program}")).expect("program");
    assert_eq!(info["volume_size_mb"], 1024, "{info}");

    // A dry run of a controller that does not touch `fs` opens no volume and reads no block.
    let (opens, reads) = (
        counter(&server, "zkcoproc_volume_opens_total"),
        counter(&server, "zkcoproc_volume_blocks_read_total"),
    );
    let (status, body) = api
        .post(&format!("/v1/programs/{program}/witnesses"), &json!({"args": {"mode": "ok"}}))
        .expect("dry run");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        counter(&server, "zkcoproc_volume_opens_total"),
        opens,
        "a dry run without fs opened the volume"
    );
    assert_eq!(counter(&server, "zkcoproc_volume_blocks_read_total"), reads);

    let size = 3_000_000u64;
    for i in 0..6 {
        let task = api
            .prove(&program, &json!({"mode": "write", "path": format!("/big/f{i}.bin"), "size": size}))
            .expect("prove");
        let t = api.wait_task(&task, Duration::from_secs(120)).expect("task");
        assert_eq!(t["status"], "done", "{t}");
    }
    assert!(counter(&server, "zkcoproc_volume_blocks_written_total") > 0);
    assert!(counter(&server, "zkcoproc_volume_opens_total") > opens);
    let files = listing(&api, &program, "/big");
    assert_eq!(files.len(), 6, "{files:?}");
    assert!(files.values().all(|&s| s == size), "{files:?}");
    let resp =
        reqwest::blocking::get(format!("{}/v1/programs/{program}/fs/big/f5.bin", server.url)).expect("read");
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().expect("bytes");
    assert!(bytes.len() as u64 == size && bytes.iter().all(|&b| b == b'z'), "file read back differs");

    // The export streams the whole GiB; independent tools read it.
    fsck(&server, &program, tmp.path());
    let img = tmp.path().join(format!("{program}.img"));
    assert_eq!(std::fs::metadata(&img).expect("image").len(), 1 << 30);
    let mtype = Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .arg("::/BIG/F3.BIN")
        .output()
        .expect("mtype (mtools)");
    assert!(mtype.status.success(), "{}", String::from_utf8_lossy(&mtype.stderr));
    assert!(mtype.stdout.len() as u64 == size && mtype.stdout.iter().all(|&b| b == b'z'));
}
