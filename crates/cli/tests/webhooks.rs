//! Webhooks over real HTTP: a receiver that fails the first attempts gets the task signed and
//! retried; a delivery in flight when the service is SIGKILLed arrives after the restart with
//! the same delivery id; callback URLs of non-public addresses are refused, at submit and (for a
//! name that resolves to one) at delivery; redirects are not followed.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use serde_json::{json, Value};
use sha2::Sha256;
use zkcoproc_testing::{hello_app, poll, Api, Server};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zkcoproc"))
}

/// How the receiver answers a request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// 302 to this port on loopback
    Redirect(u16),
    /// read the request, never answer
    Hang,
}

/// A request the receiver got.
#[derive(Clone, Debug)]
struct Delivery {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP receiver on loopback answering from a script, then with `then`.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Delivery>>>,
    script: Arc<Mutex<(VecDeque<Answer>, Answer)>>,
}

impl Receiver {
    fn start(script: Vec<Answer>, then: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new((VecDeque::from(script), then)));
        let (seen2, script2) = (seen.clone(), script.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (seen, script) = (seen2.clone(), script2.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("request line");
                    let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    let mut headers = HashMap::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).expect("header");
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                        }
                    }
                    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).expect("body");
                    seen.lock().expect("seen").push(Delivery { path, headers, body });
                    let answer = {
                        let mut s = script.lock().expect("script");
                        let then = s.1;
                        s.0.pop_front().unwrap_or(then)
                    };
                    let mut stream = stream;
                    let reply = match answer {
                        Answer::Hang => {
                            std::thread::sleep(Duration::from_secs(300));
                            return;
                        }
                        Answer::Status(code) => {
                            format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        }
                        Answer::Redirect(port) => format!(
                            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/stolen\r\n\
                             Content-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                    };
                    let _ = stream.write_all(reply.as_bytes());
                });
            }
        });
        Receiver { port, seen, script }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().expect("seen").clone()
    }

    /// From now on, answer `answer`.
    fn answer(&self, answer: Answer) {
        let mut s = self.script.lock().expect("script");
        s.0.clear();
        s.1 = answer;
    }
}

/// What a receiver does: HMAC-SHA256 keyed with the secret over the timestamp header's digits
/// followed by the body, compared with the signature header.
fn signature_ok(secret: &str, d: &Delivery) -> bool {
    let (Some(ts), Some(sig)) =
        (d.headers.get("x-zkcoproc-timestamp"), d.headers.get("x-zkcoproc-signature"))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(ts.as_bytes());
    mac.update(&d.body);
    hex::decode(sig).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

/// Deploys the hello app with `extra` fields; returns the answer's status and JSON.
fn deploy(api: &Api, extra: Value) -> (u16, Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let app = hello_app();
    let mut body = json!({
        "controller": b64.encode(std::fs::read(&app.controller).expect("controller")),
        "circuit": b64.encode(std::fs::read(&app.circuit).expect("circuit")),
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    api.post("/v1/programs", &body).expect("deploy")
}

fn submit(api: &Api, program: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"args": {"n": 3}});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    api.post(&format!("/v1/programs/{program}/proofs"), &body).expect("submit")
}

/// Waits for the task's delivery to reach `state`; returns the task.
fn wait_callback(api: &Api, task: &str, state: &str) -> Value {
    poll(Duration::from_secs(60), || {
        let (_, t) = api.get(&format!("/v1/tasks/{task}"))?;
        Ok((t["callback_state"] == state).then_some(t))
    })
    .unwrap_or_else(|e| panic!("task {task} never reached callback state {state}: {e}"))
}

#[test]
fn webhooks_are_signed_and_retried_until_the_receiver_takes_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let elsewhere = Receiver::start(vec![], Answer::Status(200));
    let receiver =
        Receiver::start(vec![Answer::Status(500), Answer::Redirect(elsewhere.port)], Answer::Status(204));
    let flags = ["--webhook-allow-private", "--webhook-first-retry-ms", "200"];
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &flags).expect("server");
    let api = server.api();

    // The first deploy sets the program's default URL and tells its secret, once.
    let (status, deployed) = deploy(&api, json!({"callback_url": receiver.url("/default")}));
    assert_eq!(status, 201, "{deployed}");
    let secret = deployed["webhook_secret"].as_str().expect("webhook_secret").to_owned();
    assert_eq!(secret.len(), 64);
    let (status, again) = deploy(&api, json!({}));
    assert_eq!((status, again.get("webhook_secret")), (200, None), "{again}");
    let program = deployed["program_id"].as_str().expect("program_id").to_owned();
    let (_, info) = api.get(&format!("/v1/programs/{program}")).expect("program");
    assert_eq!(info["callback_url"], json!(receiver.url("/default")));

    // A task without a URL goes to the program's; 500 and a redirect are retried, 204 ends it.
    let (status, submitted) = submit(&api, &program, json!({}));
    assert_eq!(status, 202, "{submitted}");
    let task_id = submitted["task_id"].as_str().expect("task_id").to_owned();
    let task = wait_callback(&api, &task_id, "delivered");
    assert_eq!(task["status"], "done");
    let statuses: Vec<&Value> =
        task["callbacks"].as_array().expect("callbacks").iter().map(|c| &c["status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(302), &json!(204)], "{task}");
    let errors: Vec<&Value> =
        task["callbacks"].as_array().expect("callbacks").iter().map(|c| &c["error"]).collect();
    assert!(errors[0].as_str().is_some_and(|e| e.contains("500")), "{task}");
    assert!(errors[1].as_str().is_some_and(|e| e.contains("redirects are not followed")), "{task}");
    assert_eq!(errors[2], &Value::Null);
    assert!(elsewhere.seen().is_empty(), "a redirect was followed");

    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    for d in &seen {
        assert_eq!(d.path, "/default");
        assert_eq!(d.headers.get("x-zkcoproc-delivery"), Some(&task_id), "one delivery id for every attempt");
        assert!(signature_ok(&secret, d), "signature of {:?}", d.headers);
        let body: Value = serde_json::from_slice(&d.body).expect("task JSON");
        assert_eq!((body["id"].as_str(), body["status"].as_str()), (Some(task_id.as_str()), Some("done")));
        let ts: u64 = d.headers["x-zkcoproc-timestamp"].parse().expect("timestamp");
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        assert!(now.abs_diff(ts) < 300, "timestamp {ts}, now {now}");
    }
    // The signature covers the body and the timestamp: changing either breaks it.
    let mut tampered = seen[2].clone();
    tampered.body.push(b' ');
    assert!(!signature_ok(&secret, &tampered));
    let mut replayed = seen[2].clone();
    replayed.headers.insert("x-zkcoproc-timestamp".into(), "1".into());
    assert!(!signature_ok(&secret, &replayed));
    assert!(!signature_ok(&"0".repeat(64), &seen[2]));

    // A request's own URL wins over the program's; a cancelled task is delivered too.
    receiver.answer(Answer::Status(200));
    let (_, submitted) = submit(&api, &program, json!({"callback_url": receiver.url("/mine?token=s3cret")}));
    let task_id = submitted["task_id"].as_str().expect("task_id").to_owned();
    // Tasks are public to read: their answers hide the URL's query (a receiver's token).
    let (_, shown) = api.get(&format!("/v1/tasks/{task_id}")).expect("task");
    assert_eq!(shown["callback_url"], json!(receiver.url("/mine?…")), "{shown}");
    let (status, _) = api.delete(&format!("/v1/tasks/{task_id}")).expect("cancel");
    if status == 200 {
        let task = wait_callback(&api, &task_id, "delivered");
        assert_eq!(task["status"], "cancelled");
    } else {
        wait_callback(&api, &task_id, "delivered"); // it finished before the cancel
    }
    let last = receiver.seen().pop().expect("delivery");
    assert_eq!(
        (last.path.as_str(), last.headers.get("x-zkcoproc-delivery")),
        ("/mine?token=s3cret", Some(&task_id))
    );
    assert!(signature_ok(&secret, &last));

    // Rotation: the new secret, told once, signs what follows; the old one no longer does.
    let (status, rotated) =
        api.post(&format!("/v1/programs/{program}/webhook-secret"), &json!({})).expect("rotate");
    assert_eq!(status, 200, "{rotated}");
    let fresh = rotated["webhook_secret"].as_str().expect("new secret").to_owned();
    assert!(fresh.len() == 64 && fresh != secret);
    let (_, submitted) = submit(&api, &program, json!({}));
    let task_id = submitted["task_id"].as_str().expect("task_id").to_owned();
    wait_callback(&api, &task_id, "delivered");
    let last = receiver.seen().pop().expect("delivery");
    assert_eq!(last.headers.get("x-zkcoproc-delivery"), Some(&task_id));
    assert!(signature_ok(&fresh, &last) && !signature_ok(&secret, &last));
    let (status, _) =
        api.post(&format!("/v1/programs/{}/webhook-secret", "0".repeat(64)), &json!({})).expect("rotate");
    assert_eq!(status, 404);

    // Attempts are counted by how they ended.
    let metrics =
        reqwest::blocking::get(format!("{}/metrics", server.url)).and_then(|r| r.text()).expect("metrics");
    let count = |outcome: &str| {
        let prefix = format!("zkcoproc_webhook_attempts_total{{outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())).and_then(|v| v.parse::<u64>().ok())
    };
    assert!(
        count("delivered").is_some_and(|n| n >= 3) && count("retry").is_some_and(|n| n >= 2),
        "{metrics}"
    );
}

#[test]
fn a_delivery_in_flight_at_a_sigkill_arrives_after_the_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // The receiver takes the first request and never answers: the attempt is in flight.
    let receiver = Receiver::start(vec![Answer::Hang], Answer::Status(200));
    let flags = ["--webhook-allow-private", "--webhook-timeout-ms", "120000"];
    let mut server = Server::start(bin(), &data, "dev", &flags).expect("server");
    let api = server.api();
    let (status, deployed) = deploy(&api, json!({}));
    assert_eq!(status, 201, "{deployed}");
    let secret = deployed["webhook_secret"].as_str().expect("secret").to_owned();
    let program = deployed["program_id"].as_str().expect("program_id").to_owned();
    let (status, submitted) = submit(&api, &program, json!({"callback_url": receiver.url("/hook")}));
    assert_eq!(status, 202, "{submitted}");
    let task_id = submitted["task_id"].as_str().expect("task_id").to_owned();
    poll(Duration::from_secs(60), || Ok((!receiver.seen().is_empty()).then_some(()))).expect("first attempt");
    let (_, task) = api.get(&format!("/v1/tasks/{task_id}")).expect("task");
    assert_eq!((task["status"].as_str(), task["callback_state"].as_str()), (Some("done"), Some("pending")));
    assert_eq!(task["callbacks"], json!([]), "nothing recorded while the attempt is in flight");

    server.kill();
    let server = Server::start(bin(), &data, "dev", &flags).expect("restart");
    let api = server.api();
    let task = wait_callback(&api, &task_id, "delivered");
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "delivered again after the restart");
    for d in &seen {
        assert_eq!(d.headers.get("x-zkcoproc-delivery"), Some(&task_id), "the same delivery id");
        assert!(signature_ok(&secret, d));
    }
    let statuses: Vec<&Value> =
        task["callbacks"].as_array().expect("callbacks").iter().map(|c| &c["status"]).collect();
    assert_eq!(statuses, [&json!(200)], "{task}");
}

#[test]
fn callbacks_go_to_public_addresses_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start(vec![], Answer::Status(200));
    let server = Server::start(bin(), &tmp.path().join("data"), "dev", &[]).expect("server");
    let api = server.api();
    // Addresses are refused when the URL names them.
    for url in [
        receiver.url("/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://0x7f000001/".to_owned(),
        "ftp://example.com/".to_owned(),
    ] {
        let (status, err) = deploy(&api, json!({"callback_url": url}));
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("bad_callback_url")), "{url}: {err}");
    }
    let (status, deployed) = deploy(&api, json!({}));
    assert_eq!(status, 201, "{deployed}");
    let program = deployed["program_id"].as_str().expect("program_id").to_owned();
    let (status, err) = submit(&api, &program, json!({"callback_url": receiver.url("/hook")}));
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("bad_callback_url")), "{err}");
    // A name that resolves to one is refused when resolved, for good, and nothing is sent.
    let url = format!("http://localhost:{}/hook", receiver.port);
    let (status, submitted) = submit(&api, &program, json!({"callback_url": url}));
    assert_eq!(status, 202, "{submitted}");
    let task_id = submitted["task_id"].as_str().expect("task_id");
    let task = wait_callback(&api, task_id, "abandoned");
    let callbacks = task["callbacks"].as_array().expect("callbacks");
    assert_eq!(callbacks.len(), 1, "{task}");
    assert_eq!(callbacks[0]["status"], Value::Null);
    assert!(callbacks[0]["error"].as_str().is_some_and(|e| e.contains("not a public address")), "{task}");
    assert!(receiver.seen().is_empty(), "a non-public address was called");
}
