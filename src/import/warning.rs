//! A setting that has no equivalent in ccscope.toml, or was changed on the way: said with
//! the file:line:column it came from, never dropped in silence.

use std::fmt;

use serde::Serialize;

use super::yaml::Pos;
use crate::config::Location;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportWarning {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for ImportWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// The warnings of one file, in the order they are found.
#[derive(Debug)]
pub(crate) struct Warnings<'a> {
    pub file: &'a str,
    pub list: &'a mut Vec<ImportWarning>,
}

impl Warnings<'_> {
    pub fn at(&mut self, at: Pos, message: impl Into<String>) {
        self.list.push(ImportWarning {
            location: Location {
                file: self.file.to_string(),
                line: at.line,
                column: at.column,
            },
            message: message.into(),
        });
    }
}
