//! Bad input gets the right status and a clear message, and the service keeps serving.

use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};
use zkcoproc_testing::{hello_app, Api, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

fn assert_error(api: &Api, (status, body): (u16, Value), want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {body}");
    // ... and the service is still there. A fresh client: after refusing an oversized body the
    // server closes that connection (without reading the rest), and a pooled client may race
    // the close and reuse it.
    let (status, _) = Api::new(api.url()).get("/health").expect("health after bad input");
    assert_eq!(status, 200);
}

#[test]
fn bad_requests_get_their_status_and_the_service_keeps_serving() {
    let app = hello_app();
    let tmp = tempfile::tempdir().expect("tempdir");
    // A small body limit so the oversized case is cheap.
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &["--max-body-bytes", "4000000"])
        .expect("server");
    let api = server.api();
    let b64 = base64::engine::general_purpose::STANDARD;
    let wasm = std::fs::read(&app.controller).expect("wasm");
    let circuit = std::fs::read(&app.circuit).expect("circuit");
    let deploy = |controller: &[u8], circuit: &[u8]| {
        api.post(
            "/v1/programs",
            &json!({"controller": b64.encode(controller), "circuit": b64.encode(circuit)}),
        )
        .expect("post")
    };

    // Malformed JSON, wrong shapes, unknown fields, bad base64.
    assert_error(
        &api,
        api.post_raw("/v1/programs", "application/json", b"{not json".to_vec()).expect("post"),
        400,
        "bad_json",
    );
    assert_error(
        &api,
        api.post_raw("/v1/programs", "text/plain", b"{}".to_vec()).expect("post"),
        415,
        "unsupported_media_type",
    );
    assert_error(&api, api.post("/v1/programs", &json!({"controller": 1})).expect("post"), 422, "bad_json");
    assert_error(
        &api,
        api.post("/v1/programs", &json!({"controller": "!!", "circuit": ""})).expect("post"),
        400,
        "bad_base64",
    );

    // A controller that is not wasm, a core module, and a component without the exports.
    assert_error(&api, deploy(b"definitely not wasm", &circuit), 400, "invalid_controller");
    assert_error(&api, deploy(b"\0asm\x01\0\0\0", &circuit), 400, "invalid_controller");
    let (status, body) = deploy(b"\0asm\x0d\0\x01\0", &circuit);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_controller")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("no export"), "{body}");

    // A circuit that is not an ELF, and an ELF that is not a RISC Zero program.
    assert_error(&api, deploy(&wasm, b"not an elf at all"), 400, "invalid_circuit");
    // (a small, complete x86-64 ELF: the `zkcoproc` debug binary itself exceeds the body cap)
    let x86_elf = std::fs::read("/bin/true").expect("an x86-64 ELF");
    assert!(x86_elf.starts_with(b"\x7fELF"));
    assert_error(&api, deploy(&wasm, &x86_elf), 400, "invalid_circuit");

    // Oversized bodies: 413.
    let big = vec![b'a'; 5_000_000];
    assert_error(
        &api,
        api.post_raw("/v1/programs", "application/json", big).expect("post"),
        413,
        "too_large",
    );

    // Unknown and malformed ids.
    let program = api.deploy(app).expect("deploy");
    let unknown_program = "0".repeat(64);
    let unknown_task = "01234567-89ab-cdef-0123-456789abcdef";
    assert_error(&api, api.get(&format!("/v1/programs/{unknown_program}")).expect("get"), 404, "not_found");
    assert_error(&api, api.get("/v1/programs/xyz").expect("get"), 400, "bad_id");
    assert_error(&api, api.get(&format!("/v1/tasks/{unknown_task}")).expect("get"), 404, "not_found");
    assert_error(&api, api.get("/v1/tasks/not-a-task").expect("get"), 400, "bad_id");
    assert_error(&api, api.get(&format!("/v1/tasks/{unknown_task}/proof")).expect("get"), 404, "not_found");
    assert_error(
        &api,
        api.post(&format!("/v1/programs/{unknown_program}/proofs"), &json!({"args": {}})).expect("post"),
        404,
        "not_found",
    );
    assert_error(&api, api.get("/v1/nothing-here").expect("get"), 404, "not_found");
    assert_error(&api, api.post("/health", &json!({})).expect("post"), 405, "method_not_allowed");

    // A dry run whose controller refuses the arguments: 422 with the controller's message.
    let (status, body) =
        api.post(&format!("/v1/programs/{program}/witnesses"), &json!({"args": {"m": 1}})).expect("dry");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "controller_error");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("bad args"), "{body}");

    // Verify requests must say what to verify.
    assert_error(&api, api.post("/v1/verify", &json!({})).expect("post"), 400, "bad_request");
    assert_error(
        &api,
        api.post("/v1/verify", &json!({"receipt": "AAAA", "image_id": "zz"})).expect("post"),
        400,
        "bad_image_id",
    );
    let (status, verdict) =
        api.post("/v1/verify", &json!({"receipt": "AAAA", "image_id": "00".repeat(32)})).expect("post");
    assert_eq!((status, &verdict["valid"]), (200, &json!(false)), "{verdict}");

    // After all that, a real request still works.
    let task = api.prove(&program, &json!({"n": 2})).expect("prove");
    let t = api.wait_task(&task, std::time::Duration::from_secs(60)).expect("task");
    assert_eq!(t["status"], "done", "{t}");
}
