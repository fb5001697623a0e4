//! From TOML text to the raw schema, a piece at a time, so that every piece that does not
//! fit is reported rather than only the first one serde meets.
//!
//! The text is parsed once into spanned TOML values (a syntax error stops there: what follows
//! it cannot be read reliably). Then `[project]`, `[defaults]` and each service are
//! deserialized on their own; a table that does not fit is tried again one key at a time, so
//! that an unknown key and a wrong type in one service are both found. Spans stay those of the
//! whole text, so every error keeps its line and column.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Error, ValueDeserializer};

use super::schema::{RawConfig, RawDefaults, RawProject, RawService};

/// What could be read, and every error met on the way.
#[derive(Debug, Default)]
pub(crate) struct RawRead {
    /// Every piece that fits. A service or `[project]` that does not is left out of it.
    pub raw: RawConfig,
    /// Each with the span of what it is about.
    pub errors: Vec<Error>,
    /// A `[project]` table was there but did not fit: it is not "missing".
    pub project_unreadable: bool,
    /// Services whose table did not fit, by name with the name's span: they exist (a
    /// dependency on one is not on an unknown service) but are not validated further.
    pub unreadable_services: BTreeMap<String, Range<usize>>,
}

/// Reads `text`; `Err` is a TOML syntax error, the only one that stops reading.
pub(crate) fn read(text: &str) -> Result<RawRead, Error> {
    let root = DeTable::parse(text)?;
    let mut read = RawRead::default();
    for (key, value) in root.get_ref() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("project", _) => {
                let (project, errors) = fit::<Spanned<RawProject>>(value);
                if errors.is_empty() {
                    read.raw.project = project;
                } else {
                    read.project_unreadable = true;
                    read.errors.extend(errors);
                }
            }
            ("defaults", _) => {
                // What fits of the defaults still applies, so that services are checked
                // against them as they will run.
                let (defaults, errors) = fit::<RawDefaults>(value);
                read.raw.defaults = defaults.unwrap_or_default();
                read.errors.extend(errors);
            }
            ("services", DeValue::Table(services)) => {
                for (name, service) in services {
                    let (raw, errors) = fit::<Spanned<RawService>>(service);
                    let name = Spanned::new(name.span(), name.get_ref().to_string());
                    match raw {
                        Some(raw) if errors.is_empty() => {
                            read.raw.services.insert(name, raw);
                        }
                        _ => {
                            read.unreadable_services
                                .insert(name.get_ref().clone(), name.span());
                            read.errors.extend(errors);
                        }
                    }
                }
            }
            // An unknown table, or `services` that is not a table: serde says what is wrong
            // (and which keys would be right) when it reads that key alone.
            _ => {
                let mut alone = DeTable::new();
                alone.insert(key.clone(), value.clone());
                let alone = Spanned::new(root.span(), DeValue::Table(alone));
                if let Err(e) = deserialize::<RawConfig>(&alone) {
                    read.errors.push(e);
                }
            }
        }
    }
    Ok(read)
}

/// `value` as a `T`; if it does not fit and is a table, each of its keys alone, so that every
/// key that does not fit is an error of its own. The `T` returned then holds the keys that
/// fit (for a type whose keys are all optional, as every table of the schema is).
fn fit<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>) -> (Option<T>, Vec<Error>) {
    let whole = match deserialize::<T>(value) {
        Ok(t) => return (Some(t), Vec::new()),
        Err(e) => e,
    };
    let DeValue::Table(table) = value.get_ref() else {
        return (None, vec![whole]);
    };
    let mut errors = Vec::new();
    let mut fitting = DeTable::new();
    for (key, item) in table {
        let mut alone = DeTable::new();
        alone.insert(key.clone(), item.clone());
        match deserialize::<T>(&Spanned::new(value.span(), DeValue::Table(alone))) {
            Ok(_) => {
                fitting.insert(key.clone(), item.clone());
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        // Only the keys together do not fit: report what the whole said.
        errors.push(whole);
    }
    let rest = deserialize::<T>(&Spanned::new(value.span(), DeValue::Table(fitting))).ok();
    (rest, errors)
}

fn deserialize<T: DeserializeOwned>(value: &Spanned<DeValue<'_>>) -> Result<T, Error> {
    T::deserialize(ValueDeserializer::from(value.clone()))
}
