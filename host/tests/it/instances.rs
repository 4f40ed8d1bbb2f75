//! More than one instance (README: "Running more than one"): one stanzahook per node of an ejabberd cluster, and
//! several on one ejabberd node split by `domain_balancing`; each sender's stanzas stay in order,
//! and what a dead process costs, in each setup.
//!
//! Each stanzahook posts to a webhook of its own, so a test knows which process served whom.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use testkit::client::body;
use testkit::{Ejabberd, EjabberdCluster, Element, HostProcess, ServerSetup, TestServer, TestWebhook, XmppClient};

use crate::harness::{CONNECT_WAIT, DOMAIN, QUIET, SECRET, WAIT, message, stanzahook_bin};

/// ejabberd 23.01's option for several connections of one domain on one node: a sender's
/// stanzas go to one of `component_number` slots, chosen by the sender's bare JID; each
/// connection takes a free slot at its handshake.
const BALANCING: &str = "\
domain_balancing:
  \"bot.localhost\":
    type: bare_source
    component_number: 2
";

/// The same without `component_number`: ejabberd 23.01 accepts the config, then crashes on
/// every handshake for the domain (`{badkey,component_number}`).
const TYPE_ALONE: &str = "\
domain_balancing:
  \"bot.localhost\":
    type: bare_source
";

/// How long after the kill the survivor must answer the dead one's senders (README: within a
/// second; ~0.1 s measured on an idle machine).
const TAKEOVER: Duration = Duration::from_secs(1);

/// A stanzahook serving `DOMAIN` through one component port, posting to a webhook of its own.
struct Instance {
    host: HostProcess,
    webhook: TestWebhook,
    args: Vec<String>,
}

impl Instance {
    /// Starts it and waits until it is connected.
    async fn start(server: &dyn TestServer) -> Instance {
        Instance::start_with(server, None).await
    }

    /// Starts it with a config file and waits until it is connected.
    async fn start_with(server: &dyn TestServer, config: Option<&std::path::Path>) -> Instance {
        let webhook = TestWebhook::start().await.expect("webhook starts");
        let args = testkit::host::run_args(DOMAIN, &server.component_addr(), SECRET, &webhook.url, config);
        let host = connected(&args).await;
        Instance { host, webhook, args }
    }

    /// A new process in place of a dead one: same command line, same webhook.
    async fn replace(&mut self) {
        self.host = connected(&self.args).await;
    }

    /// The senders (bare JIDs) of the requests its webhook has seen.
    fn senders(&self) -> BTreeSet<String> {
        self.webhook.requests().iter().map(|r| bare(r.event["from"].as_str().unwrap_or("")).to_owned()).collect()
    }

    /// The bodies its webhook has seen from `sender` (a bare JID).
    fn bodies_from(&self, sender: &str) -> Vec<String> {
        let requests = self.webhook.requests();
        let from = |r: &&testkit::webhook::Recorded| bare(r.event["from"].as_str().unwrap_or("")) == sender;
        requests.iter().filter(from).map(|r| r.event["body"].as_str().unwrap_or("").to_owned()).collect()
    }
}

async fn connected(args: &[String]) -> HostProcess {
    let mut host = HostProcess::start(stanzahook_bin(), args).expect("stanzahook starts");
    if let Err(e) = host.wait_for_log("connected, serving", CONNECT_WAIT).await {
        panic!("stanzahook did not connect: {e:#}");
    }
    host
}

/// A logged-in user who writes numbered messages to the `jitter` node (answered after 0–40 ms,
/// a different delay for each number, so replies would overtake each other if they could).
struct Sender {
    name: &'static str,
    client: XmppClient,
    /// Its numbers are `base..`, so that every sender's bodies differ.
    base: u32,
}

impl Sender {
    async fn login(server: &dyn TestServer, name: &'static str, base: u32) -> Sender {
        let client = match XmppClient::login(server.c2s_port(), name, &password(name)).await {
            Ok(client) => client,
            Err(e) => panic!("{name} cannot log in: {e:#}\nejabberd's log:\n{}", server.log()),
        };
        Sender { name, client, base }
    }

    fn jid(&self) -> String {
        format!("{}@localhost", self.name)
    }

    async fn send(&mut self, node: &str, text: &str) {
        self.client.send(&message(&format!("{node}@{DOMAIN}"), text)).await.expect("send");
    }

    /// Everything it receives within `within` (replies, errors).
    async fn received(&mut self, within: Duration) -> Vec<Element> {
        self.client.drain(within).await.expect("client ok")
    }
}

/// What each sender (its bare JID) receives within `QUIET`, all watched at once.
async fn all_received(senders: &mut [Sender]) -> Vec<(String, Vec<Element>)> {
    let each = senders.iter_mut().map(|sender| async { (sender.jid(), sender.received(QUIET).await) });
    futures::future::join_all(each).await
}

fn password(user: &str) -> String {
    format!("{user}pw")
}

fn setup(users: &[&str]) -> ServerSetup {
    users.iter().fold(ServerSetup::default().component(DOMAIN, SECRET), |setup, user| setup.user(user, &password(user)))
}

fn bare(jid: &str) -> &str {
    testkit::client::bare(jid)
}

fn texts(stanzas: &[Element]) -> Vec<String> {
    stanzas.iter().map(String::from).collect()
}

/// Every sender writes `count` numbered messages, interleaved with the others', in one burst;
/// asserts that each gets its `count` replies in the order it wrote.
async fn burst(senders: &mut [Sender], count: u32) {
    for n in 0..count {
        for sender in senders.iter_mut() {
            let text = (sender.base + n).to_string();
            sender.send("jitter", &text).await;
        }
    }
    for sender in senders.iter_mut() {
        let mut got = Vec::new();
        while got.len() < count as usize {
            let what = format!("{}'s reply {}", sender.name, got.len());
            let (reply, _) = sender.client.expect(WAIT, &what, |el| el.name() == "message").await.expect("reply");
            assert_ne!(reply.attr("type"), Some("error"), "{}: {}", sender.name, String::from(&reply));
            got.push(body(&reply).unwrap_or_default());
        }
        let expected: Vec<String> = (sender.base..sender.base + count).map(|n| n.to_string()).collect();
        assert_eq!(got, expected, "{}'s replies out of order", sender.name);
    }
}

/// Two ejabberd nodes in one cluster (no `domain_balancing`), one stanzahook on each node's
/// component port; alice writes to node 1, bob to node 2. ejabberd routes a sender's stanzas
/// to the component connection on the sender's own node, so each sender stays with one process
/// and in order. When node 1's stanzahook is killed, node 1 routes to node 2's: alice is served
/// again within a second; what was in flight in the dead process is lost, nothing after.
#[tokio::test]
async fn a_cluster_keeps_each_sender_in_order_and_moves_a_dead_processes_senders_to_another_node() {
    if !testkit::require(EjabberdCluster::installed(), "ejabberd (with epmd)", "apt-get install ejabberd") {
        return;
    }
    let test_started = Instant::now();
    let cluster = EjabberdCluster::start(&setup(&["alice", "bob"]), 2).expect("a two-node cluster starts");
    let (node1, node2) = (&cluster.nodes[0], &cluster.nodes[1]);
    eprintln!(
        "cluster: node 1 served after {} ms; node 2 after {} ms more, of which join_cluster {} ms",
        cluster.started_in[0].as_millis(),
        cluster.started_in[1].as_millis(),
        node2.joined_in().unwrap_or_default().as_millis()
    );
    let mut one = Instance::start(node1).await;
    let two = Instance::start(node2).await;
    let mut alice = Sender::login(node1, "alice", 0).await;
    let mut bob = Sender::login(node2, "bob", 1000).await;

    let mut senders = [alice, bob];
    burst(&mut senders, 50).await;
    [alice, bob] = senders;
    assert_eq!(one.senders(), BTreeSet::from([alice.jid()]), "node 1's stanzahook serves node 1's sender only");
    assert_eq!(two.senders(), BTreeSet::from([bob.jid()]), "node 2's stanzahook serves node 2's sender only");

    // A stanza in flight in node 1's process (the webhook takes 3 s), then that process dies.
    alice.send("slow", "in flight").await;
    one.webhook.wait_for(51, WAIT).await.expect("the slow call is under way in node 1's process");
    // One more the moment before the kill: it waits behind the slow call in the dead process
    // if it got there, and is answered by node 2's if ejabberd routed it after the switch.
    alice.send("echo", "just before").await;
    let killed = Instant::now();
    one.host.kill().expect("SIGKILL");

    // alice writes every 20 ms until an answer comes: the ones sent before node 1 noticed the
    // dead connection go nowhere, the rest to node 2's process.
    let mut probes: usize = 0;
    let mut received = Vec::new();
    let first_answer = loop {
        let elapsed = killed.elapsed();
        assert!(elapsed < TAKEOVER * 5, "no answer {} ms after the kill", elapsed.as_millis());
        alice.send("echo", &format!("probe {probes}")).await;
        probes += 1;
        // The first stanza within 20 ms, at once: the time of the first answer is its arrival.
        let Some(got) = alice.client.recv(Duration::from_millis(20)).await.expect("client ok") else { continue };
        let answered = got.name() == "message" && body(&got).is_some();
        received.push(got);
        if answered {
            break killed.elapsed();
        }
    };
    // Past the slow call's 3 s, so that its reply would have come by now.
    let rest = Duration::from_millis(3500).saturating_sub(killed.elapsed()).max(QUIET);
    received.extend(alice.received(rest).await);
    let mut answered: Vec<String> = received.iter().filter_map(body).collect();
    let just_before = answered.first().is_some_and(|first| first == "just before");
    if just_before {
        answered.remove(0);
    }
    let lost = probes.saturating_sub(answered.len());
    eprintln!(
        "cluster: node 1's stanzahook killed; node 2's answered alice {} ms later; {lost} of {probes} probes \
         (one every 20 ms from the kill on) lost, the slow call in flight lost, the one sent just before the \
         kill {}",
        first_answer.as_millis(),
        if just_before { "answered by node 2's" } else { "lost" }
    );
    assert!(first_answer < TAKEOVER, "node 2 answered alice {} ms after the kill", first_answer.as_millis());
    assert!(received.iter().all(|el| el.attr("type") != Some("error")), "no errors: {:?}", texts(&received));
    let expected: Vec<String> = (lost..probes).map(|n| format!("probe {n}")).collect();
    assert_eq!(answered, expected, "only probes sent before the switch are lost, the rest answered in order");
    let by_two = two.bodies_from(&alice.jid());
    assert_eq!(by_two[usize::from(just_before)..], expected, "node 2's stanzahook answered them");
    assert!(one.bodies_from(&alice.jid()).contains(&"in flight".to_owned()));

    // From then on node 2's process serves both, each in order.
    let mut senders = [alice, bob];
    senders[0].base = 2000;
    burst(&mut senders, 20).await;
    assert_eq!(two.senders(), BTreeSet::from([senders[0].jid(), senders[1].jid()]));
    eprintln!("cluster test took {} ms", test_started.elapsed().as_millis());
}

/// One ejabberd node with `domain_balancing` (`BALANCING`), two stanzahooks, six senders: each
/// sender is served by one process, in order, and both processes get senders. A process that
/// dies leaves its slot empty: its senders' stanzas are dropped without an answer or an error
/// until a new process connects and takes the slot. Before the second process connects, the
/// second slot's senders are dropped the same way.
#[tokio::test]
async fn domain_balancing_splits_senders_in_order_and_drops_a_dead_slots_senders_until_it_is_taken() {
    if !testkit::require(Ejabberd::installed(), "ejabberd", "apt-get install ejabberd") {
        return;
    }
    let test_started = Instant::now();
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let server = Ejabberd::start_with_yaml(&setup(&names), BALANCING).expect("ejabberd starts");
    let mut first = Instance::start(&server).await;
    let mut senders = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        senders.push(Sender::login(&server, name, 1000 * i as u32).await);
    }

    // One process for two slots: the first slot's senders are served, the others get nothing.
    for sender in &mut senders {
        sender.send("echo", "early").await;
    }
    let mut served_early = BTreeSet::new();
    for (jid, got) in all_received(&mut senders).await {
        assert!(got.iter().all(|el| el.attr("type") != Some("error")), "{jid}: {:?}", texts(&got));
        if !got.is_empty() {
            served_early.insert(jid);
        }
    }

    let second = Instance::start(&server).await;
    burst(&mut senders, 30).await;
    let (by_first, by_second) = (first.senders(), second.senders());
    let all: BTreeSet<String> = senders.iter().map(Sender::jid).collect();
    eprintln!("domain_balancing: first process serves {by_first:?}, second {by_second:?}");
    assert!(by_first.is_disjoint(&by_second), "each sender is served by one process only");
    assert_eq!(&by_first | &by_second, all);
    assert!(!by_first.is_empty() && !by_second.is_empty(), "both slots have senders");
    assert_eq!(served_early, by_first, "alone, the first process served its own slot's senders, no others");

    // The first process dies: its senders get nothing, not even an error; the others are served.
    first.host.kill().expect("SIGKILL");
    for sender in &mut senders {
        sender.send("echo", "while down").await;
    }
    let replies: BTreeMap<String, Vec<Element>> = all_received(&mut senders).await.into_iter().collect();
    for (jid, got) in &replies {
        if by_first.contains(jid) {
            assert!(got.is_empty(), "{jid}'s slot is empty: dropped silently, got {:?}", texts(got));
        } else {
            assert_eq!(got.iter().filter_map(body).collect::<Vec<_>>(), ["while down"], "{jid}: {:?}", texts(got));
        }
    }

    // A new process takes the empty slot: the same senders are served again; what was sent
    // while the slot was empty is gone.
    first.replace().await;
    for sender in &mut senders {
        sender.send("echo", "back").await;
    }
    for (jid, got) in all_received(&mut senders).await {
        assert_eq!(got.iter().filter_map(body).collect::<Vec<_>>(), ["back"], "{jid}: {:?}", texts(&got));
    }
    let back_by_first: BTreeSet<String> =
        all.iter().filter(|jid| first.bodies_from(jid).contains(&"back".to_owned())).cloned().collect();
    assert_eq!(back_by_first, by_first, "the new process serves the dead one's senders");
    eprintln!("domain_balancing test took {} ms", test_started.elapsed().as_millis());
}

/// Under `domain_balancing` a keepalive echo is routed by its sender's address like any stanza,
/// so it may reach the other process: an idle process must still find an echo of its own, and
/// not take its server for dead and reconnect (which would drop its slot's senders meanwhile).
#[tokio::test]
async fn idle_processes_sharing_a_domain_keep_their_connections_alive() {
    if !testkit::require(Ejabberd::installed(), "ejabberd", "apt-get install ejabberd") {
        return;
    }
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let server = Ejabberd::start_with_yaml(&setup(&names), BALANCING).expect("ejabberd starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("stanzahook.toml");
    std::fs::write(&config, "[connection]\nkeepalive = \"300ms\"\ndead_after = \"700ms\"\n").expect("config");
    let first = Instance::start_with(&server, Some(&config)).await;
    let second = Instance::start_with(&server, Some(&config)).await;
    // Ten keepalive rounds each, with nothing else on the streams.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut senders = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        senders.push(Sender::login(&server, name, 1000 * i as u32).await);
    }
    for sender in &mut senders {
        sender.send("echo", "still there").await;
    }
    for (jid, got) in all_received(&mut senders).await {
        assert_eq!(got.iter().filter_map(body).collect::<Vec<_>>(), ["still there"], "{jid}: {:?}", texts(&got));
    }
    for (which, instance) in [("first", &first), ("second", &second)] {
        let log = instance.host.log();
        assert!(!log.contains("connection lost"), "the {which} process reconnected while idle:\n{log}");
        assert_eq!(log.matches("connected, serving").count(), 1, "{which}:\n{log}");
    }
}

/// `domain_balancing` with `type` and no `component_number`: ejabberd 23.01 crashes in every
/// handshake for the domain (`maps:get(component_number, ...)` in `ejabberd_router`), so no
/// stanzahook can serve it. The README warns; this pins what the operator sees.
#[tokio::test]
async fn domain_balancing_without_component_number_fails_every_handshake() {
    if !testkit::require(Ejabberd::installed(), "ejabberd", "apt-get install ejabberd") {
        return;
    }
    let server = Ejabberd::start_with_yaml(&setup(&[]), TYPE_ALONE).expect("ejabberd starts");
    let webhook = TestWebhook::start().await.expect("webhook starts");
    let args = testkit::host::run_args(DOMAIN, &server.component_addr(), SECRET, &webhook.url, None);
    let mut host = HostProcess::start(stanzahook_bin(), &args).expect("stanzahook starts");
    host.wait_for_log_count("next attempt", 2, WAIT).await.expect("it keeps trying");
    let log = host.log();
    eprintln!("stanzahook's log with `type` alone:\n{log}");
    assert!(!log.contains("connected, serving"), "{log}");
    let server_log = server.log();
    let lines: Vec<&str> = server_log.lines().collect();
    let crash = lines.iter().position(|line| line.contains("{badkey,component_number}"));
    let Some(crash) = crash else { panic!("no {{badkey,component_number}} in ejabberd's log:\n{server_log}") };
    eprintln!("ejabberd's log:\n{}", lines[crash.saturating_sub(1)..(crash + 6).min(lines.len())].join("\n"));
}
