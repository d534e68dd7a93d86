//! The environment overlay: `GAZETTE_<SECTION>__<KEY>` variables laid over the
//! config file's TOML table before it is read into the raw types.

pub(super) fn scalar_from_env(value: &str) -> toml::Value {
    if let Ok(b) = value.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = value.parse::<f64>() {
        if value.contains('.') {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(value.to_string())
}

pub(super) fn set_path(
    table: &mut toml::Table,
    key: &str,
    value: toml::Value,
) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut current = table;
    for part in &parts[..parts.len() - 1] {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(format!(
                    "`{part}` is a list or a value, not a section; it cannot be set from the environment"
                ))
            }
        };
    }
    current.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
