//! Why a rule flag was refused: one line naming the flag, the rule as written, the field
//! at fault and what was expected there.

use std::fmt;

/// A rule that does not parse, e.g.
/// `--modify-header "/~d [/X/1": filter: expected ... at column 5`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The flag the rule came with, e.g. `--modify-header`.
    pub flag: &'static str,
    /// The rule text as given.
    pub rule: String,
    /// Which part of the rule is at fault: `rule`, `filter`, `name`, `value`, `regex`,
    /// `replacement`, `path`.
    pub field: &'static str,
    /// What was expected (or what went wrong), without the position.
    pub message: String,
    /// 1-based column (in characters) within the rule text, when one can be named.
    pub column: Option<usize>,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}: {}: {}",
            self.flag, self.rule, self.field, self.message
        )?;
        if let Some(column) = self.column {
            write!(f, " at column {column}")?;
        }
        Ok(())
    }
}

/// The flag and text of the rule being parsed, so every error names both.
#[derive(Debug, Clone, Copy)]
pub(super) struct RuleText<'a> {
    pub flag: &'static str,
    pub text: &'a str,
}

impl RuleText<'_> {
    /// An error in `field`, at `column` if known. Messages are kept to one line.
    pub fn error(
        &self,
        field: &'static str,
        column: Option<usize>,
        message: impl Into<String>,
    ) -> RuleError {
        let message: String = message.into();
        RuleError {
            flag: self.flag,
            rule: self.text.to_string(),
            field,
            message: message.replace(['\n', '\r'], " "),
            column,
        }
    }
}
