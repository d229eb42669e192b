//! The web console in a real headless browser (Debian's chromium over the
//! DevTools protocol, see `browser.rs`), against the real application.
//! With `LAKEHOUSE_SCREENSHOTS=docs/console` the tests also write the
//! screenshots `docs/operations.md` shows.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::browser::{screenshots, Browser};
use crate::helpers::{spawn_app, spawn_app_with, spawn_app_with_tokens, TestApp};

async fn seed(app: &TestApp, workers: usize) {
    crate::helpers::seed_workers(app, workers, None).await;
}

/// Opens the console and waits for the tree.
async fn open_console(browser: &Browser, app: &TestApp, page: &str) {
    browser
        .open(&format!("{}/console#{page}", app.address))
        .await;
    browser
        .wait_for(
            "the tree with the embed actor",
            "!!document.querySelector('.node[data-actor=\"embed\"]')",
        )
        .await;
}

/// Fills the search form's fields (by name, the playbook off) and
/// submits it.
async fn submit_search(browser: &Browser, fields: &[(&str, &str)]) {
    let set: String = fields
        .iter()
        .map(|(name, value)| format!("f.elements[{name:?}].value = {value:?}; "))
        .collect();
    browser
        .eval(&format!(
            "(() => {{ const f = document.querySelector('#search'); {set}\
             f.elements.use_playbook.checked = false; }})()"
        ))
        .await;
    browser
        .eval("document.querySelector('#search button').click()")
        .await;
}

/// JavaScript: whether the element is shown (not hidden, nor inside
/// something hidden).
const SHOWN: &str = "((e) => !!e && !e.closest('[hidden]') && e.getClientRects().length > 0)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_loads_offline_with_no_errors_and_no_request_leaving_the_host() {
    let app = spawn_app().await;
    seed(&app, 200).await;
    let response = app.get("/console").await;
    assert_eq!(response.status(), StatusCode::OK);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");

    let browser = Browser::launch(1280, 800).await;
    open_console(&browser, &app, "tree").await;
    browser
        .screenshot(screenshots().as_deref(), "tree.png")
        .await;
    browser.eval("location.hash = '#health'").await;
    browser
        .wait_for(
            "the health page with charts and alarms",
            "document.querySelectorAll('#charts .chart').length >= 3 && \
             document.querySelectorAll('#alarms li').length >= 1",
        )
        .await;
    // A few samples (one every 2 s), so the charts have lines.
    browser
        .wait_for(
            "four samples",
            "Number(document.querySelector('#charts').dataset.samples) >= 4",
        )
        .await;
    browser
        .screenshot(screenshots().as_deref(), "health.png")
        .await;
    browser.eval("location.hash = '#search'").await;
    browser
        .wait_for(
            "the search form",
            &format!("{SHOWN}(document.querySelector('#search button'))"),
        )
        .await;

    // Readable on a phone: nothing wider than the screen, on every page.
    browser.viewport(390, 844, true).await;
    for page in ["tree", "health", "search"] {
        browser.eval(&format!("location.hash = '#{page}'")).await;
        browser
            .wait_for(
                &format!("the {page} page shown"),
                &format!("!document.querySelector('#page-{page}').hidden"),
            )
            .await;
        let fits = browser
            .eval("document.documentElement.scrollWidth <= window.innerWidth + 1")
            .await;
        assert_eq!(fits, Value::Bool(true), "the {page} page fits a phone");
    }

    assert_eq!(browser.errors(), Vec::<String>::new(), "console errors");
    let requests = browser.requests();
    assert!(
        requests.iter().any(|u| u.ends_with("/console/app.js")),
        "{requests:?}"
    );
    let foreign: Vec<&String> = requests
        .iter()
        .filter(|u| !u.starts_with(&app.address) && !u.starts_with("data:"))
        .collect();
    assert!(
        foreign.is_empty(),
        "requests that left the host: {foreign:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_injected_from_the_page_shows_the_actor_restarting_then_running_without_a_reload() {
    let app = spawn_app_with(&[("faults.enabled", "true")]).await;
    let browser = Browser::launch(1280, 800).await;
    open_console(&browser, &app, "tree").await;
    browser.eval("window.__sameDocument = true").await;
    browser
        .wait_for(
            "the event stream open",
            "document.body.dataset.live === 'true'",
        )
        .await;
    let button = "document.querySelector('[data-fault=\"validate\"]')";
    browser
        .wait_for("the inject button", &format!("{SHOWN}({button})"))
        .await;

    browser.eval(&format!("{button}.click()")).await;
    browser
        .wait_for(
            "validate shown restarting, then running",
            "(() => { const log = window.lakehouseStatusLog.filter(s => s.actor === 'validate') \
                         .map(s => s.status); \
                     const down = log.indexOf('restarting'); \
                     return down >= 0 && log.indexOf('running', down) > down; })()",
        )
        .await;
    browser
        .wait_for(
            "the tree shows the restart",
            "(() => { const n = document.querySelector('.node[data-actor=\"validate\"]'); \
                     return n.querySelector('.status').dataset.status === 'running' \
                         && n.querySelector('.meta').textContent.includes('restarts 1') \
                         && n.querySelector('details').textContent.includes('injected fault'); })()",
        )
        .await;
    assert_eq!(
        browser.eval("window.__sameDocument === true").await,
        Value::Bool(true),
        "no reload"
    );
    let logged = browser
        .eval("document.querySelector('#events li[data-kind=\"failed\"][data-actor=\"validate\"]').textContent")
        .await;
    assert!(
        logged.as_str().unwrap().contains("injected fault"),
        "{logged}"
    );

    // A restart caught in the act: an index whose load is slowed down.
    let created = app
        .post_json(
            "/v1/vectors/index",
            &json!({"name": "slow", "dimension": 4}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    browser
        .wait_for(
            "the new index",
            "!!document.querySelector('.node[data-actor=\"index:slow\"]')",
        )
        .await;
    let slowed = app
        .post_json(
            "/v1/admin/faults",
            &json!({"actor": "index:slow", "fault": "slow_load", "delay_ms": 3000}),
        )
        .await;
    assert_eq!(slowed.status(), StatusCode::ACCEPTED);
    browser
        .wait_for(
            "index:slow restarting",
            "['restarting', 'starting'].includes(document.querySelector('.node[data-actor=\"index:slow\"] .status').dataset.status)",
        )
        .await;
    browser
        .screenshot(screenshots().as_deref(), "tree-restarting.png")
        .await;
    browser
        .wait_for(
            "index:slow running again",
            "document.querySelector('.node[data-actor=\"index:slow\"] .status').dataset.status === 'running'",
        )
        .await;
    assert_eq!(browser.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_returns_workers_and_a_recorded_placement_shows_the_boost() {
    let app = spawn_app().await;
    seed(&app, 600).await;
    let browser = Browser::launch(1280, 800).await;
    open_console(&browser, &app, "search").await;

    // With the keyboard: the need, the role, Enter.
    browser
        .eval("document.querySelector('#search [name=query]').select()")
        .await;
    browser
        .type_text("forklift operator for a night shift")
        .await;
    browser
        .eval("document.querySelector('#search [name=role]').focus()")
        .await;
    browser.type_text("Forklift Operator").await;
    browser.press("Enter").await;
    browser
        .wait_for(
            "ten workers",
            "document.querySelectorAll('#results tbody tr').length === 10",
        )
        .await;
    let roles = browser
        .eval("[...document.querySelectorAll('#results tbody tr td:nth-child(2)')].map(td => td.textContent)")
        .await;
    assert!(
        roles
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().starts_with("Forklift Operator")),
        "{roles}"
    );
    let why = browser
        .eval("document.querySelector('#results tbody tr .why').textContent")
        .await;
    assert!(
        why.as_str().unwrap().contains("semantic") && why.as_str().unwrap().contains("fused"),
        "{why}"
    );

    // Record the fifth worker with score 1: the next search shows the boost.
    let chosen = browser
        .eval("document.querySelectorAll('#results tbody tr')[4].dataset.worker")
        .await;
    let chosen = chosen.as_str().unwrap().to_string();
    browser
        .eval(&format!(
            "document.querySelector('[data-record=\"{chosen}\"]').click()"
        ))
        .await;
    browser
        .wait_for(
            "the chosen worker boosted",
            &format!(
                "(() => {{ const row = document.querySelector('#results tr[data-worker=\"{chosen}\"]'); \
                          return !!row && row.dataset.boosted === 'true' \
                              && row.querySelector('.why').textContent.includes('× 0.50'); }})()"
            ),
        )
        .await;
    browser
        .screenshot(screenshots().as_deref(), "search.png")
        .await;

    // Draft outreach to a worker and check it with the validator.
    browser
        .eval(&format!(
            "document.querySelector('[data-draft=\"{chosen}\"]').click()"
        ))
        .await;
    browser
        .eval("document.querySelector('#draft button').click()")
        .await;
    browser
        .wait_for(
            "the validator's verdict",
            "document.querySelector('#verdict').textContent.startsWith('valid')",
        )
        .await;
    // And ask the chat pane.
    browser
        .eval("document.querySelector('#chat button').click()")
        .await;
    browser
        .wait_for(
            "an answer with citations",
            "document.querySelectorAll('#answer .citations li').length >= 1",
        )
        .await;
    assert_eq!(browser.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_sees_no_write_or_admin_controls() {
    let (app, tokens) = spawn_app_with_tokens(&[("faults.enabled", "true")]).await;
    crate::helpers::seed_workers(&app, 300, Some(&tokens.admin)).await;
    let browser = Browser::launch(1280, 800).await;
    browser
        .open(&format!("{}/console#search", app.address))
        .await;
    // Without a token the API refuses, and the page says so verbatim.
    browser
        .wait_for(
            "the 401 shown",
            "document.querySelector('#error').textContent.startsWith('unauthorized:')",
        )
        .await;

    browser
        .eval("document.querySelector('#token').focus()")
        .await;
    browser.type_text(&tokens.read).await;
    browser.press("Enter").await;
    browser
        .wait_for(
            "signed in as reader",
            "document.querySelector('#who').textContent.includes('(read')",
        )
        .await;
    browser
        .eval("document.querySelector('#search button').click()")
        .await;
    browser
        .wait_for(
            "results",
            "document.querySelectorAll('#results tbody tr').length === 10",
        )
        .await;
    // Drafting is for everyone; recording a placement needs `write`.
    assert_eq!(
        browser
            .eval(&format!(
                "[...document.querySelectorAll('[data-draft]')].filter({SHOWN}).length"
            ))
            .await,
        json!(10)
    );
    browser.eval("location.hash = '#tree'").await;
    browser
        .wait_for(
            "the tree",
            "!!document.querySelector('.node[data-actor=\"embed\"]')",
        )
        .await;
    let visible = browser
        .eval(&format!(
            "[...document.querySelectorAll('[data-needs]')].filter({SHOWN}).length"
        ))
        .await;
    assert_eq!(
        visible,
        json!(0),
        "no write or admin control is shown to a reader"
    );
    assert_eq!(
        browser
            .eval(&format!(
                "[...document.querySelectorAll('[data-fault]')].filter({SHOWN}).length"
            ))
            .await,
        json!(0)
    );

    // An admin sees the fault buttons.
    browser
        .eval("document.querySelector('#token').value = ''")
        .await;
    browser
        .eval("document.querySelector('#token').focus()")
        .await;
    browser.type_text(&tokens.admin).await;
    browser.press("Enter").await;
    browser
        .wait_for(
            "an admin's inject buttons",
            &format!("[...document.querySelectorAll('[data-fault]')].filter({SHOWN}).length > 0"),
        )
        .await;
    // Session storage only: a new tab of another origin never sees it.
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('lakehouse.token') !== null")
            .await,
        Value::Bool(true)
    );
}

/// The search pane's radius box: a city, its state and a number of miles
/// find the workers of nearby cities too, each shown with its distance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radius_search_finds_nearby_cities_and_shows_each_distance() {
    let app = spawn_app().await;
    seed(&app, 2000).await;
    let browser = Browser::launch(1280, 800).await;
    open_console(&browser, &app, "search").await;
    submit_search(
        &browser,
        &[
            ("query", "warehouse work"),
            ("k", "200"),
            ("city", "Joliet"),
            ("state", "IL"),
            ("miles", "25"),
        ],
    )
    .await;
    browser
        .wait_for(
            "workers with distances",
            "document.querySelectorAll('#results tbody tr').length > 0 \
             && [...document.querySelectorAll('#results tbody .why')].every(td => / mi away/.test(td.textContent))",
        )
        .await;
    let rows = browser
        .eval(
            "[...document.querySelectorAll('#results tbody tr')].map(tr => \
               [tr.querySelector('td:nth-child(2)').textContent, \
                Number(tr.querySelector('.why').textContent.match(/([0-9.]+) mi away/)[1])])",
        )
        .await;
    let rows = rows.as_array().unwrap();
    let cities: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r[0].as_str().unwrap().rsplit(", ").next().unwrap())
        .collect();
    // Joliet's own workers and Aurora's (18 miles off), not Chicago's.
    assert_eq!(cities, ["Aurora IL", "Joliet IL"].into(), "{rows:?}");
    assert!(
        rows.iter().all(|r| r[1].as_f64().unwrap() <= 25.0),
        "{rows:?}"
    );
    browser
        .screenshot(screenshots().as_deref(), "search-radius.png")
        .await;
    assert_eq!(browser.errors(), Vec::<String>::new());
    // A radius without the state is not dropped: the service's refusal shows.
    submit_search(&browser, &[("state", "")]).await;
    browser
        .wait_for(
            "the refusal of a radius without its state",
            "!document.querySelector('#error').hidden \
             && /city and state/.test(document.querySelector('#error').textContent)",
        )
        .await;
    // The browser logs the refused request itself, and nothing else.
    let errors = browser.errors();
    assert!(errors.len() == 1 && errors[0].contains("422"), "{errors:?}");
}

/// The search pane's window and shift: the console asks what the API
/// answers for the same window and shift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_for_free_days_and_a_shift_finds_what_the_api_finds() {
    let app = spawn_app().await;
    seed(&app, 2000).await;
    let browser = Browser::launch(1280, 800).await;
    open_console(&browser, &app, "search").await;
    submit_search(
        &browser,
        &[
            ("query", "truck driver"),
            ("k", "50"),
            ("role", "CDL Driver"),
            ("mode", "hybrid"),
            ("free_from", "2026-12-10"),
            ("free_to", "2026-12-20"),
            ("shift", "night"),
        ],
    )
    .await;
    browser
        .wait_for(
            "workers free on those days",
            "document.querySelectorAll('#results tbody tr').length > 0",
        )
        .await;
    let shown = browser
        .eval("[...document.querySelectorAll('#results tbody tr')].map(tr => tr.dataset.worker)")
        .await;
    let response = app
        .post_json(
            "/v1/matrix/search",
            &json!({"query": "truck driver", "k": 50, "role": "CDL Driver", "mode": "hybrid",
                    "available_between": {"from": "2026-12-10", "to": "2026-12-20"},
                    "shift_any": ["night"], "use_playbook": false}),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let expected: Vec<Value> = body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["worker_id"].clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(shown, Value::Array(expected));
    assert_eq!(browser.errors(), Vec::<String>::new());
}
