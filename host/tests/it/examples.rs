//! The example webhooks a newcomer copies, run for real behind a real Prosody.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use testkit::client::body;

use crate::harness::{Bridge, DOMAIN, Options, WAIT, message};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/webhooks")
}

async fn wait_for_port(port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "example webhook did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn round_trip(post_url: String) {
    let Some(mut b) = Bridge::start(Options { post_url: Some(post_url), ..Options::default() }).await else {
        return;
    };
    b.alice.send(&message(&format!("echo@{DOMAIN}"), "ping from alice ☃")).await.expect("send");
    let (reply, _) = b.alice.expect(WAIT, "echo", |el| el.name() == "message").await.expect("echo");
    assert_eq!(body(&reply).as_deref(), Some("ping from alice ☃"), "host log:\n{}", b.host.log());
    // A chat state without a body gets no reply.
    b.alice
        .send(&format!(
            "<message to='echo@{DOMAIN}' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ))
        .await
        .expect("send");
    b.expect_silence().await;
}

#[tokio::test]
async fn python_echo_webhook() {
    if !testkit::require_program("python3", "apt-get install python3") {
        return;
    }
    let port = testkit::free_port().expect("port");
    let child = Command::new("python3")
        .arg(examples_dir().join("echo.py"))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let _server = Server(child);
    wait_for_port(port).await;
    round_trip(format!("http://127.0.0.1:{port}/")).await;
}

#[tokio::test]
async fn php_echo_webhook() {
    if !testkit::require_program("php", "apt-get install php-cli") {
        return;
    }
    let port = testkit::free_port().expect("port");
    let child = Command::new("php")
        .args(["-S", &format!("127.0.0.1:{port}")])
        .arg(examples_dir().join("echo.php"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("php runs");
    let _server = Server(child);
    wait_for_port(port).await;
    round_trip(format!("http://127.0.0.1:{port}/")).await;
}
