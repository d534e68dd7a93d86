//! The tests that need a system package: headless Chromium (what a person sees,
//! and the editor's desk driven over the DevTools protocol),
//! Node with the inbox check's packages (caniemail, MJML), and dkimpy (an
//! independent DKIM verifier). A harness of their own (libtest-mimic), so that
//! where a package is missing the summary says "ignored", naming what to install,
//! rather than a silent "ok". `.ci/run` installs everything and fails if any test
//! here is ignored.
// The shared modules serve the other test binary too: their #[test] functions
// and what only those use are not compiled here.
#![allow(dead_code, unused_imports)]

mod browser;
mod desk;
mod dkim;
mod inbox;
mod mailserver;
mod serving;
mod util;

use libtest_mimic::{Arguments, Failed, Trial};

/// What a test needs, and what to install when it is missing.
#[derive(Clone, Copy)]
enum Needs {
    Chromium,
    NodeAndChromium,
    Dkimpy,
}

impl Needs {
    /// `None` when present, else what is missing (shown beside the test) and
    /// how to install it.
    fn missing(self) -> Option<(&'static str, &'static str)> {
        let chromium = browser::chromium().is_some();
        match self {
            Needs::Chromium if !chromium => Some(("needs chromium", "apt-get install chromium")),
            Needs::NodeAndChromium if !chromium || !inbox::node_packages_present() => Some((
                "needs node, chromium",
                "apt-get install chromium nodejs npm && npm ci --prefix tests/email-check",
            )),
            Needs::Dkimpy if !dkim::available() => Some((
                "needs dkimpy",
                "pip install dkimpy pynacl (and openssl on the PATH)",
            )),
            _ => None,
        }
    }
}

fn trial(name: &str, needs: Needs, test: fn()) -> Trial {
    let run = move || {
        std::panic::catch_unwind(test).map_err(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the test panicked".into());
            Failed::from(message)
        })
    };
    match needs.missing() {
        None => Trial::test(name, run),
        Some((what, install)) => {
            eprintln!("ignored: {name} ({what}: {install})");
            Trial::test(name, run)
                .with_kind(what)
                .with_ignored_flag(true)
        }
    }
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        trial(
            "browser::sample_issue_fits_phone_and_desktop_widths_in_light_and_dark",
            Needs::Chromium,
            browser::sample_issue_fits_phone_and_desktop_widths_in_light_and_dark,
        ),
        trial(
            "browser::the_preview_and_the_unsubscribe_page_fit_a_phone",
            Needs::Chromium,
            browser::the_preview_and_the_unsubscribe_page_fit_a_phone,
        ),
        trial(
            "desk::digests_at_phone_and_desktop_widths_sample_and_themed",
            Needs::Chromium,
            desk::digests_at_phone_and_desktop_widths_sample_and_themed,
        ),
        trial(
            "desk::the_desk_in_a_browser_pins_writes_the_intro_and_approves",
            Needs::Chromium,
            desk::the_desk_in_a_browser_pins_writes_the_intro_and_approves,
        ),
        trial(
            "desk::the_report_page_reads_at_phone_width_in_light_and_dark",
            Needs::Chromium,
            desk::the_report_page_reads_at_phone_width_in_light_and_dark,
        ),
        trial(
            "inbox::inbox_check_against_caniemail_and_an_mjml_twin",
            Needs::NodeAndChromium,
            inbox::inbox_check_against_caniemail_and_an_mjml_twin,
        ),
        trial(
            "dkim::signatures_verify_with_an_independent_implementation",
            Needs::Dkimpy,
            dkim::signatures_verify_with_an_independent_implementation,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
