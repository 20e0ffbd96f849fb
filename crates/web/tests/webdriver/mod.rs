//! The WebDriver harness of the browser tests (this crate's `browser.rs` and the cli's
//! `serve_cli.rs`, which includes this file by path): chromedriver on a free port, a
//! headless Chromium session, and the few element helpers the tests use.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A child process (chromedriver, a server) killed when dropped, so that a failing test
/// leaves none behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_chromedriver() -> (KillOnDrop, u16) {
    let port = free_port();
    let exe = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe} (apt-get install chromium-driver): {e}"));
    let driver = KillOnDrop(child);
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, port)
}

pub async fn browser(driver_port: u16) -> Client {
    let mut chrome = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-dev-shm-usage", "--window-size=1400,1000", "--hide-scrollbars"]});
    if let Ok(bin) = std::env::var("CHROME_BIN") {
        chrome["binary"] = json!(bin);
    } else if std::path::Path::new("/usr/bin/chromium").exists() {
        chrome["binary"] = json!("/usr/bin/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), chrome);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a chromedriver session")
}

pub async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .attr(name)
        .await
        .unwrap()
}

pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.send_keys(text).await.unwrap();
}

pub async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn displayed(c: &Client, css: &str) -> bool {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.is_displayed().await.unwrap()
}

pub async fn wait_ready(c: &Client) {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("body[data-ready='1']"))
        .await
        .expect("the page finished loading");
}

/// Waits until `f` holds (the pages update asynchronously).
pub async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn all_images_loaded(c: &Client) -> bool {
    c.execute(
        "return [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete);",
        vec![],
    )
    .await
    .unwrap()
        == json!(true)
}

pub async fn screenshot(c: &Client, name: &str) {
    if let Ok(dir) = std::env::var("LEUKEX_SCREENSHOT_DIR") {
        until("images", || all_images_loaded(c)).await;
        let png = c.screenshot().await.unwrap();
        std::fs::write(PathBuf::from(dir).join(name), png).unwrap();
    }
}

/// Drags the mouse over `element` from `from` to `to` (CSS pixels from its centre).
pub async fn drag(
    c: &Client,
    element: &fantoccini::elements::Element,
    from: (f64, f64),
    to: (f64, f64),
) {
    use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: element.clone(),
            duration: None,
            x: from.0,
            y: from.1,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(150)),
            x: to.0 - from.0,
            y: to.1 - from.1,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    c.perform_actions(mouse).await.unwrap();
}

/// Presses `keys` together, in order, then lets go (the painter's shortcuts listen on
/// the document).
pub async fn press(c: &Client, keys: &[char]) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let mut actions = KeyActions::new("keyboard".into());
    for &value in keys {
        actions = actions.then(KeyAction::Down { value });
    }
    for &value in keys.iter().rev() {
        actions = actions.then(KeyAction::Up { value });
    }
    c.perform_actions(actions).await.unwrap();
}

/// The blinded round as both browser tests walk it: on `{base}/rate` a new rater starts
/// (name, expertise), sees the first (calibration) map on a page that names none of
/// `hidden`, scores it 2 with "shows morphological information: yes" (the page is kept
/// as `shot` under `LEUKEX_SCREENSHOT_DIR`), sees the next map, reloads the page and
/// finds the round resumed there with one map rated. Returns the opaque ids of the
/// rated map and the next one.
pub async fn rate_the_first_map_blinded_and_reload(
    c: &Client,
    base: &str,
    (name, expertise): (&str, &str),
    hidden: &[&str],
    shot: Option<&str>,
) -> (String, String) {
    c.goto(&format!("{base}/rate")).await.unwrap();
    wait_ready(c).await;
    type_into(c, "#name", name).await;
    type_into(c, "#expertise", expertise).await;
    click(c, "#start-btn").await;
    until("the first blinded map", || async {
        attr(c, "#blind-map", "data-map").await.is_some()
    })
    .await;
    let first = attr(c, "#blind-map", "data-map").await.unwrap();
    let progress = text(c, "#progress").await;
    assert!(progress.starts_with("0 of "), "{progress}");
    assert!(displayed(c, "#calibration").await);
    let page = c.source().await.unwrap();
    for h in hidden {
        assert!(!page.contains(h), "the blinded page shows `{h}`");
    }
    click(c, "#score-2").await;
    click(c, "#morph-yes").await;
    if let Some(name) = shot {
        screenshot(c, name).await;
    }
    click(c, "#submit").await;
    until("the next map", || async {
        attr(c, "#blind-map", "data-map")
            .await
            .is_some_and(|m| m != first)
    })
    .await;
    let second = attr(c, "#blind-map", "data-map").await.unwrap();

    c.refresh().await.unwrap();
    wait_ready(c).await;
    until("the resumed round", || async {
        attr(c, "#blind-map", "data-map").await.is_some()
    })
    .await;
    assert_eq!(attr(c, "#blind-map", "data-map").await.unwrap(), second);
    let progress = text(c, "#progress").await;
    assert!(progress.starts_with("1 of "), "{progress}");
    assert!(!displayed(c, "#calibration").await);
    (first, second)
}
