//! The environment overlay: a `GAZETTE_<SECTION>__<KEY>` variable sets
//! `section.key` over what the config file says (`GAZETTE_SMTP__DKIM__DOMAIN` sets
//! `smtp.dkim.domain`). In: the file's TOML table and the environment. Out: the raw
//! file types of [`super::raw`], read from both at once, and an [`Overlay`] that
//! remembers which variable set which key, so that every error about a value from
//! the environment, in reading or in validation, names the variable and not the file.
//!
//! A variable's text is typed by the field it sets, as serde asks for it: the text
//! is parsed as a number where the field is a number, as `true`/`false` where it is
//! a boolean, and kept as it is where it is a string, so `12345` is a password and
//! `5` a count without guessing.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::{MapDeserializer, StringDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Unexpected, Visitor};

use super::raw::RawConfig;
use super::{ConfigError, Secret, ENV_PREFIX};

/// The variable that holds the HMAC key of links; not a config key.
const SECRET_VAR: &str = "SECRET";

/// `GAZETTE_SECRET`, when set and not empty (the last setting wins, as in an
/// environment built up by layers).
pub(super) fn secret(env: &[(String, String)]) -> Option<Secret> {
    env.iter()
        .rev()
        .find(|(var, _)| var.strip_prefix(ENV_PREFIX) == Some(SECRET_VAR))
        .filter(|(_, value)| !value.is_empty())
        .map(|(_, value)| Secret::new(value.as_str()))
}

/// The config keys set from the environment.
pub(super) struct Overlay {
    /// `section.key` → (variable, its text).
    keys: BTreeMap<String, (String, String)>,
}

impl Overlay {
    /// Picks out the `GAZETTE_<SECTION>__<KEY>` variables; the others (`GAZETTE_LOG`,
    /// `GAZETTE_SECRET`, `GAZETTE_CONFIG`, …) have no `__` and are not config keys.
    pub(super) fn from_env(env: &[(String, String)]) -> Overlay {
        let keys = env
            .iter()
            .filter_map(|(var, value)| {
                let rest = var.strip_prefix(ENV_PREFIX)?;
                rest.contains("__").then(|| {
                    let key = rest
                        .split("__")
                        .map(|p| p.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join(".");
                    (key, (var.clone(), value.clone()))
                })
            })
            .collect();
        Overlay { keys }
    }

    /// The error for a wrong value at `key`: it names the environment variable when
    /// one set the key, else the config file.
    pub(super) fn error(&self, file: &str, key: &str, message: impl Into<String>) -> ConfigError {
        let var = self.keys.get(key).map(|(var, _)| var.as_str());
        key_error(var, file, key, message.into())
    }

    /// Reads the raw config from the file's table with the variables laid over it.
    pub(super) fn read(&self, table: &toml::Table, file: &str) -> Result<RawConfig, ConfigError> {
        let mut root = Node::File(toml::Value::Table(table.clone()));
        for (key, (var, text)) in &self.keys {
            root.set(key, text).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
        }
        serde_path_to_error::deserialize(root).map_err(|e| {
            let key = e.path().to_string();
            key_error(self.var_behind(&key, table), file, &key, e.into_inner().0)
        })
    }

    /// The variable behind a key serde could not read: the one that set it or, for a
    /// key the file does not have (an unknown section), one that set a key below it.
    fn var_behind(&self, key: &str, table: &toml::Table) -> Option<&str> {
        if let Some((var, _)) = self.keys.get(key) {
            return Some(var);
        }
        let mut parts = key.split('.');
        let mut in_file = parts.next().and_then(|p| table.get(p));
        for part in parts {
            in_file = in_file.and_then(|v| v.get(part));
        }
        if in_file.is_some() {
            return None;
        }
        let below = format!("{key}.");
        self.keys
            .iter()
            .find(|(k, _)| k.starts_with(&below))
            .map(|(_, (var, _))| var.as_str())
    }
}

/// The error for a wrong value at `key`, set by the variable `var` or by the file.
fn key_error(var: Option<&str>, file: &str, key: &str, message: String) -> ConfigError {
    match var {
        Some(var) => ConfigError::Env {
            var: var.into(),
            message: format!("key `{key}`: {message}"),
        },
        None => ConfigError::Key {
            file: file.into(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key.into()
            },
            message,
        },
    }
}

/// The file's table with the environment's values in place, as serde reads it.
enum Node {
    /// A value from the file, read as TOML reads it.
    File(toml::Value),
    /// A variable's text, typed by the field it lands in.
    Env(String),
    /// A section that holds values from the environment.
    Section(BTreeMap<String, Node>),
}

impl Node {
    /// Sets `a.b.c` to `text`, opening the sections on the way.
    fn set(&mut self, key: &str, text: &str) -> Result<(), String> {
        let parts: Vec<&str> = key.split('.').collect();
        let (last, path) = parts.split_last().expect("split yields one part at least");
        let mut entries = self.section("")?;
        for part in path {
            entries = entries
                .entry(part.to_string())
                .or_insert_with(|| Node::Section(BTreeMap::new()))
                .section(part)?;
        }
        entries.insert(last.to_string(), Node::Env(text.to_string()));
        Ok(())
    }

    /// This node, `name`, as a section to set keys in: a table from the file is
    /// opened up; a value or a list is not a section.
    fn section(&mut self, name: &str) -> Result<&mut BTreeMap<String, Node>, String> {
        if let Node::File(toml::Value::Table(t)) = self {
            let entries = std::mem::take(t).into_iter();
            *self = Node::Section(entries.map(|(k, v)| (k, Node::File(v))).collect());
        }
        match self {
            Node::Section(entries) => Ok(entries),
            _ => Err(format!(
                "`{name}` is a list or a value, not a section; it cannot be set from the environment"
            )),
        }
    }
}

/// A message from reading the raw config; serde_path_to_error adds the key.
#[derive(Debug)]
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl From<toml::de::Error> for Error {
    fn from(e: toml::de::Error) -> Self {
        Error(e.message().lines().next().unwrap_or_default().to_string())
    }
}

impl<'de> IntoDeserializer<'de, Error> for Node {
    type Deserializer = Node;
    fn into_deserializer(self) -> Node {
        self
    }
}

/// A field that wants a number or a boolean parses the variable's text as one.
macro_rules! parse_env_text {
    ($($method:ident: $ty:ty => $visit:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self {
                Node::Env(text) => match text.parse::<$ty>() {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(de::Error::invalid_value(Unexpected::Str(&text), &visitor)),
                },
                node => node.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => Ok(value.deserialize_any(visitor)?),
            Node::Env(text) => visitor.visit_string(text),
            Node::Section(entries) => {
                let mut map = MapDeserializer::new(entries.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::File(value) => Ok(value.deserialize_enum(name, variants, visitor)?),
            Node::Env(text) => {
                visitor.visit_enum::<StringDeserializer<Error>>(text.into_deserializer())
            }
            node => node.deserialize_any(visitor),
        }
    }

    /// A key that is there is `Some`; a missing one is `None`, as in TOML.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    parse_env_text! {
        deserialize_bool: bool => visit_bool,
        deserialize_i8: i8 => visit_i8,
        deserialize_i16: i16 => visit_i16,
        deserialize_i32: i32 => visit_i32,
        deserialize_i64: i64 => visit_i64,
        deserialize_u8: u8 => visit_u8,
        deserialize_u16: u16 => visit_u16,
        deserialize_u32: u32 => visit_u32,
        deserialize_u64: u64 => visit_u64,
        deserialize_f32: f32 => visit_f32,
        deserialize_f64: f64 => visit_f64,
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}
