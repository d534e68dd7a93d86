//! What a person sees: the sample issue in headless Chromium at phone and desktop
//! widths, light and dark. Where Chromium is not installed the harness
//! (tests/external.rs) reports these as ignored (`apt-get install chromium`;
//! `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Chromium's path, if installed.
pub fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Chromium, which the harness checked for before running the test.
pub fn chromium_present() -> PathBuf {
    chromium().expect("the harness runs this test only where Chromium is installed")
}

fn chromium_command(chromium: &Path, profile: &Path, width: u32, dark: bool) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={width},2000"));
    if dark {
        cmd.arg("--blink-settings=preferredColorScheme=0")
            .arg("--force-dark-mode");
    }
    cmd
}

/// Measures a page at `width`: the widest element's right edge against the
/// viewport, and the document's scroll width. The probe script is added to a copy.
const PROBE: &str = r#"<script>
addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  let widest = 0, culprit = '';
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > widest) { widest = r.right; culprit = el.tagName + '.' + el.className; }
  }
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({vw, scroll: document.documentElement.scrollWidth, widest: Math.ceil(widest), culprit,
    height: document.documentElement.scrollHeight,
    color: getComputedStyle(document.querySelector('.summary') || document.body).color,
    background: getComputedStyle(document.querySelector('.container') || document.body).backgroundColor});
  document.body.appendChild(out);
});
</script>"#;

pub struct Probe {
    pub viewport: i64,
    /// The page's height (before the probe's own output is added).
    pub height: i64,
    pub scroll: i64,
    pub widest: i64,
    pub culprit: String,
    pub color: String,
    pub background: String,
}

/// Probes a page given as HTML text (saved beside `dir` with the probe added).
pub fn probe_html(
    chromium: &Path,
    html: &str,
    dir: &Path,
    name: &str,
    width: u32,
    dark: bool,
) -> Probe {
    let file = dir.join(name);
    std::fs::write(&file, html).unwrap();
    probe(chromium, &file, width, dark)
}

pub fn probe(chromium: &Path, html_file: &Path, width: u32, dark: bool) -> Probe {
    let html = std::fs::read_to_string(html_file).unwrap();
    let probed = html_file.with_extension("probe.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = chromium_command(chromium, profile.path(), width, dark)
        .arg("--dump-dom")
        .arg(format!("file://{}", probed.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom
        .find("<pre id=\"probe\">")
        .unwrap_or_else(|| panic!("no probe output: {}", String::from_utf8_lossy(&out.stderr)));
    let json = &dom[start + 16..];
    let json = &json[..json.find("</pre>").unwrap()];
    let v: serde_json::Value = serde_json::from_str(&json.replace("&quot;", "\"")).unwrap();
    Probe {
        viewport: v["vw"].as_i64().unwrap(),
        height: v["height"].as_i64().unwrap(),
        scroll: v["scroll"].as_i64().unwrap(),
        widest: v["widest"].as_i64().unwrap(),
        culprit: v["culprit"].as_str().unwrap().into(),
        color: v["color"].as_str().unwrap().into(),
        background: v["background"].as_str().unwrap().into(),
    }
}

pub fn screenshot(chromium: &Path, page: &str, width: u32, dark: bool, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = chromium_command(chromium, profile.path(), width, dark)
        .arg(format!("--screenshot={}", png.display()))
        .arg(page)
        .output()
        .unwrap();
    assert!(
        png.exists() && std::fs::metadata(png).unwrap().len() > 1000,
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where screenshots are kept for a person to look at.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Measures a digest at each width, light and dark: it must not scroll sideways
/// nor have anything wider than the viewport. Screenshots are saved as
/// `<prefix>-<width>[-dark].png`; `each` sees every measurement.
pub fn check_digest(
    chromium: &Path,
    html: &Path,
    widths: &[u32],
    prefix: &str,
    mut each: impl FnMut(&str, bool, &Probe),
) {
    let shots = screenshot_dir();
    for &width in widths {
        for dark in [false, true] {
            let p = probe(chromium, html, width, dark);
            let label = format!("{width}px {}", if dark { "dark" } else { "light" });
            assert!(
                p.scroll <= p.viewport,
                "{label}: the page scrolls sideways ({} > {})",
                p.scroll,
                p.viewport
            );
            assert!(
                p.widest <= p.viewport,
                "{label}: {} overflows ({} > {})",
                p.culprit,
                p.widest,
                p.viewport
            );
            each(&label, dark, &p);
            let png = shots.join(format!(
                "{prefix}-{width}{}.png",
                if dark { "-dark" } else { "" }
            ));
            screenshot(
                chromium,
                &format!("file://{}", html.display()),
                width,
                dark,
                &png,
            );
        }
    }
    eprintln!("screenshots in {}", shots.display());
}

pub fn sample_issue_fits_phone_and_desktop_widths_in_light_and_dark() {
    let chromium = chromium_present();
    let site = crate::util::Site::sample();
    site.ok(&["run", "--week", "2026-W06"]);
    let html = site.path("digests/2026-W06/digest.html");
    check_digest(&chromium, &html, &[360, 800], "digest", |label, dark, p| {
        if dark {
            assert_ne!(
                p.background, "rgb(255, 255, 255)",
                "{label}: dark mode keeps a white card"
            );
        } else {
            assert_eq!(p.color, "rgb(31, 41, 55)", "{label}");
        }
    });
}

pub fn the_preview_and_the_unsubscribe_page_fit_a_phone() {
    let chromium = chromium_present();
    let site = crate::serving::sent_site(2, "");
    let server = crate::serving::Serving::start(&site, &[], crate::util::NOW);
    let http = reqwest::blocking::Client::new();
    let token = crate::serving::token_of(&site, 1);
    let shots = screenshot_dir();
    for (name, path) in [
        ("preview", "/preview/2026-W06?width=360".to_string()),
        ("unsubscribe", format!("/u/{token}")),
    ] {
        let html = http.get(server.url(&path)).send().unwrap().text().unwrap();
        // Served pages refer to the server for the digest frame: make that absolute.
        let html = html.replace(
            "src=\"/preview/",
            &format!("src=\"{}/preview/", server.base),
        );
        let p = probe_html(
            &chromium,
            &html,
            site.dir.path(),
            &format!("{name}.html"),
            360,
            false,
        );
        assert!(
            p.scroll <= p.viewport,
            "{name}: scrolls sideways at 360 px ({} > {})",
            p.scroll,
            p.viewport
        );
        screenshot(
            &chromium,
            &server.url(&path),
            360,
            false,
            &shots.join(format!("{name}-360.png")),
        );
    }
}
