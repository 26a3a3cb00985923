//! Where in a config file's text an error is: its line, column, `[section]` and key, so that
//! `invalid type: string "8h", expected i64` becomes "line 7, column 18, key [session]
//! lifetime_seconds: invalid type: …". Shared by `tether serve`'s and `tether gateway`'s config
//! loaders (the TOML parser reports a byte span; this turns it into words).

/// Describe an error at byte offset `at` of `text` with `message`.
pub fn locate(text: &str, at: Option<usize>, message: &str) -> String {
    let message = message.trim();
    let Some(at) = at.filter(|a| *a <= text.len()) else { return message.to_string() };
    let before = &text[..at];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| format!("{} ", l.split('#').next().unwrap_or(l).trim()));
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('[') && !k.starts_with('#'))
        .map(|k| format!(", key {}{k}", section.unwrap_or_default()));
    format!("line {line_no}, column {column}{}: {message}", key.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_line_column_section_and_key() {
        let text = "listen = \"x\"\n[session]\nlifetime_seconds = \"8h\"\n";
        let at = text.find("\"8h\"").unwrap();
        assert_eq!(
            super::locate(text, Some(at), "invalid type: string \"8h\", expected i64"),
            "line 3, column 20, key [session] lifetime_seconds: invalid type: string \"8h\", expected i64"
        );
        assert_eq!(super::locate(text, None, "bad"), "bad");
        assert_eq!(super::locate("a = 1", Some(0), "m"), "line 1, column 1, key a: m");
    }
}
