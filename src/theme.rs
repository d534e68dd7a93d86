//! The site's own look: an accent colour, a logo, a font stack and a footer note
//! (`[theme]`), shared by the digest, the archive pages and the editor's desk.
//! In: the validated `[theme]` settings. Out: the colours each surface uses,
//! with the contrast arithmetic (WCAG 2.x) that keeps them readable: the accent
//! must reach 4.5:1 on the white card and under white button text, and its dark
//! mode twin is lightened until it reaches 4.5:1 on the dark card.

use std::fmt;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#0b4f9c` or `#0bf`.
    pub fn parse(s: &str) -> Option<Rgb> {
        let hex = s.trim().strip_prefix('#')?;
        let digit = |i: usize, n: usize| u8::from_str_radix(hex.get(i..i + n)?, 16).ok();
        match hex.len() {
            6 => Some(Rgb(digit(0, 2)?, digit(2, 2)?, digit(4, 2)?)),
            3 => Some(Rgb(digit(0, 1)? * 17, digit(1, 1)? * 17, digit(2, 1)? * 17)),
            _ => None,
        }
    }

    /// WCAG relative luminance.
    pub fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(self.0) + 0.7152 * channel(self.1) + 0.0722 * channel(self.2)
    }

    /// WCAG contrast ratio, 1 to 21.
    pub fn contrast(self, other: Rgb) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    /// Mixed with white by `t` (0: itself, 1: white).
    fn toward_white(self, t: f64) -> Rgb {
        let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * t).round() as u8;
        Rgb(mix(self.0), mix(self.1), mix(self.2))
    }
}

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// The card the digest and pages sit on, in light and dark mode.
pub const CARD: Rgb = Rgb(0xff, 0xff, 0xff);
pub const DARK_CARD: Rgb = Rgb(0x1a, 0x21, 0x29);
/// Body text on the light card.
pub const TEXT: Rgb = Rgb(0x1f, 0x29, 0x37);
/// What WCAG AA asks of body-size text.
pub const MIN_CONTRAST: f64 = 4.5;

/// A logo shown in place of the masthead's name (which stays its `alt`).
#[derive(Debug, Clone, PartialEq)]
pub struct Logo {
    pub url: String,
    pub width: u32,
    pub height: u32,
    pub alt: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    /// Links, buttons and rules on the light card.
    pub accent: Rgb,
    /// The same on the dark card: the accent lightened to 4.5:1.
    pub accent_dark: Rgb,
    /// A web-safe font stack for body text.
    pub font: String,
    /// A font stack for headlines.
    pub headline_font: String,
    pub logo: Option<Logo>,
    /// A line of the site's own in every footer.
    pub footer_note: Option<String>,
}

pub const DEFAULT_ACCENT: Rgb = Rgb(0x0b, 0x4f, 0x9c);
pub const DEFAULT_FONT: &str = "Arial, Helvetica, sans-serif";
pub const DEFAULT_HEADLINE_FONT: &str = "Georgia, 'Times New Roman', serif";

impl Default for Theme {
    fn default() -> Theme {
        Theme::new(
            DEFAULT_ACCENT,
            DEFAULT_FONT,
            DEFAULT_HEADLINE_FONT,
            None,
            None,
        )
    }
}

impl Theme {
    pub fn new(
        accent: Rgb,
        font: &str,
        headline_font: &str,
        logo: Option<Logo>,
        footer_note: Option<String>,
    ) -> Theme {
        Theme {
            accent,
            accent_dark: readable_on(accent, DARK_CARD),
            font: font.to_string(),
            headline_font: headline_font.to_string(),
            logo,
            footer_note,
        }
    }
}

/// `colour`, lightened just enough to reach [`MIN_CONTRAST`] on `background`.
pub fn readable_on(colour: Rgb, background: Rgb) -> Rgb {
    (0..=20)
        .map(|step| colour.toward_white(f64::from(step) / 20.0))
        .find(|c| c.contrast(background) >= MIN_CONTRAST)
        .unwrap_or(CARD)
}

/// Why an accent cannot be used, or `None`.
pub fn accent_problem(accent: Rgb) -> Option<String> {
    let on_card = accent.contrast(CARD);
    if on_card < MIN_CONTRAST {
        return Some(format!(
            "{accent} has a contrast of {on_card:.2}:1 on the white card and under white button text; links need {MIN_CONTRAST}:1 (choose a darker colour)"
        ));
    }
    None
}

/// A font stack safe to put in CSS: names, quotes, spaces, commas and hyphens.
pub fn font_stack_ok(stack: &str) -> bool {
    !stack.trim().is_empty()
        && stack.len() <= 200
        && stack
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ,'\"-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_is_wcags() {
        assert!((Rgb(0, 0, 0).contrast(CARD) - 21.0).abs() < 1e-9);
        assert!((Rgb(118, 118, 118).contrast(CARD) - 4.54).abs() < 0.01);
        assert_eq!(Rgb::parse("#0b4f9c"), Some(DEFAULT_ACCENT));
        assert_eq!(Rgb::parse("#fff"), Some(CARD));
        assert_eq!(Rgb::parse("0b4f9c"), None);
        assert_eq!(Rgb::parse("#0b4f9"), None);
    }

    #[test]
    fn a_light_accent_is_refused_and_a_dark_one_gets_a_readable_twin() {
        assert!(accent_problem(Rgb::parse("#ffcc00").unwrap()).is_some());
        assert!(accent_problem(DEFAULT_ACCENT).is_none());
        for accent in ["#0b4f9c", "#7a1f3d", "#004d40", "#000000"] {
            let a = Rgb::parse(accent).unwrap();
            let dark = readable_on(a, DARK_CARD);
            assert!(
                dark.contrast(DARK_CARD) >= MIN_CONTRAST,
                "{accent} → {dark}"
            );
        }
    }

    #[test]
    fn font_stacks_cannot_carry_css() {
        assert!(font_stack_ok("Georgia, 'Times New Roman', serif"));
        assert!(!font_stack_ok("Arial; } body { display:none"));
        assert!(!font_stack_ok("url(x)"));
    }
}
