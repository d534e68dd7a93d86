//! Turns `subscribers.sql` into Rust: every `-- query: NAME` block becomes a
//! constant `NAME` (upper case) in `store::sql`, every `-- migration: N` block an
//! entry of `MIGRATIONS`. A query the code names but the file lacks is then a
//! compile error, and one the file holds but no code runs is a dead-code warning
//! (an error under `clippy -D warnings`): the list of names is the file itself.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=subscribers.sql");
    let text = std::fs::read_to_string("subscribers.sql").expect("reading subscribers.sql");
    let mut out = String::new();
    let mut migrations: Vec<(u32, String)> = Vec::new();
    let mut queries: Vec<(String, String)> = Vec::new();
    let mut current: Option<(bool, String)> = None; // (is_query, name or number)
    let mut body = String::new();
    let mut flush = |current: &Option<(bool, String)>, body: &mut String| {
        let sql = std::mem::take(body).trim().to_string();
        match current {
            None => {}
            Some((false, n)) => migrations.push((n.parse().expect("checked"), sql)),
            Some((true, name)) => {
                if queries.iter().any(|(q, _)| q == name) {
                    panic!("subscribers.sql: query {name} is defined twice");
                }
                queries.push((name.clone(), sql));
            }
        }
    };
    for (i, line) in text.lines().enumerate() {
        if let Some(n) = line.strip_prefix("-- migration:") {
            flush(&current, &mut body);
            let n = n.trim();
            if n.parse::<u32>().is_err() {
                panic!("subscribers.sql line {}: migration number expected", i + 1);
            }
            current = Some((false, n.to_string()));
        } else if let Some(name) = line.strip_prefix("-- query:") {
            flush(&current, &mut body);
            let name = name.trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                panic!(
                    "subscribers.sql line {}: a query name is lower_snake_case",
                    i + 1
                );
            }
            current = Some((true, name.to_string()));
        } else if !line.trim_start().starts_with("--") {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&current, &mut body);
    for (i, (n, _)) in migrations.iter().enumerate() {
        if *n as usize != i + 1 {
            panic!(
                "subscribers.sql: migrations must be numbered 1, 2, 3…; found {n} at position {}",
                i + 1
            );
        }
    }
    out.push_str("/// The migrations, in order: `(number, SQL)`.\n");
    out.push_str("pub(crate) const MIGRATIONS: &[(i64, &str)] = &[\n");
    for (n, sql) in &migrations {
        writeln!(out, "    ({n}, {sql:?}),").unwrap();
    }
    out.push_str("];\n");
    for (name, sql) in &queries {
        writeln!(
            out,
            "/// `-- query: {name}` in subscribers.sql.\npub(crate) const {}: &str = {sql:?};",
            name.to_ascii_uppercase()
        )
        .unwrap();
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("queries.rs");
    std::fs::write(dest, out).expect("writing queries.rs");
}
