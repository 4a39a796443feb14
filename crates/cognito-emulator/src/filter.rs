//! ListUsers' `Filter` parameter: `attribute = "value"` (exact) or `attribute ^= "value"`
//! (prefix), one attribute at a time, quotes inside the value escaped with a backslash.
//!
//! It exists as its own module because `discover` depends on it and a parser is worth testing
//! on its own. The searchable attributes and their case rules are the ones Cognito documents:
//! `username`, `email`, `phone_number`, `name`, `given_name`, `family_name`,
//! `preferred_username`, `sub` (case-sensitive), `cognito:user_status` (case-insensitive) and
//! `status` (`Enabled`/`Disabled`, case-sensitive: it is the Enabled flag, not the user status).
//! In a pool whose `UsernameConfiguration.CaseSensitive` is false, `username` matches whatever
//! the case (both sides folded with `str::to_lowercase`), as the pool's usernames do.

use super::model::User;

/// Cognito's message for any filter it cannot use.
pub(crate) const PARSE_ERROR: &str = "Error while parsing filter.";

/// How the value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterOp {
    /// `=`
    Equals,
    /// `^=`
    Prefix,
}

/// What the filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterField {
    Username,
    /// `cognito:user_status`, compared case-insensitively.
    UserStatus,
    /// `status`: `Enabled` or `Disabled`. Emulated users are always enabled.
    Enabled,
    /// A standard attribute, by its name.
    Attribute(&'static str),
}

/// A parsed, valid filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) field: FilterField,
    pub(crate) op: FilterOp,
    pub(crate) value: String,
}

/// The filter could not be parsed or names an attribute Cognito cannot search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterError;

const SEARCHABLE: [&str; 7] = [
    "email",
    "phone_number",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "sub",
];

/// Parses a filter; an empty (or all-blank) filter means "every user" and yields `None`.
pub(crate) fn parse(input: &str) -> Result<Option<Filter>, FilterError> {
    let s = input.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let name_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or(FilterError)?;
    let (name, rest) = s.split_at(name_end);
    let field = match name {
        "username" => FilterField::Username,
        "cognito:user_status" => FilterField::UserStatus,
        "status" => FilterField::Enabled,
        other => FilterField::Attribute(
            SEARCHABLE
                .iter()
                .find(|a| **a == other)
                .copied()
                .ok_or(FilterError)?,
        ),
    };
    let rest = rest.trim_start();
    let (op, rest) = if let Some(r) = rest.strip_prefix("^=") {
        (FilterOp::Prefix, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (FilterOp::Equals, r)
    } else {
        return Err(FilterError);
    };
    let rest = rest.trim_start().strip_prefix('"').ok_or(FilterError)?;
    let mut value = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    loop {
        match chars.next() {
            None => return Err(FilterError), // unterminated quote
            Some('"') => break,
            Some('\\') => value.push(chars.next().ok_or(FilterError)?),
            Some(c) => value.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(FilterError);
    }
    Ok(Some(Filter { field, op, value }))
}

impl Filter {
    /// Prepares the filter for a case-insensitive pool: a `username` value is folded (with
    /// `str::to_lowercase`, as the pool folds usernames) once, here.
    pub(crate) fn fold_username(&mut self) {
        if self.field == FilterField::Username {
            self.value = self.value.to_lowercase();
        }
    }

    /// Whether `user` passes the filter; `fold` compares usernames folded (a case-insensitive
    /// pool, after [`Filter::fold_username`]).
    pub(crate) fn matches(&self, user: &User, fold: bool) -> bool {
        let folded;
        let candidate = match self.field {
            FilterField::Username if fold => {
                folded = user.username.to_lowercase();
                Some(folded.as_str())
            }
            FilterField::Username => Some(user.username.as_str()),
            FilterField::Enabled => Some("Enabled"),
            FilterField::UserStatus => {
                let status = user.status.as_str();
                return match self.op {
                    FilterOp::Equals => status.eq_ignore_ascii_case(&self.value),
                    FilterOp::Prefix => status
                        .get(..self.value.len())
                        .is_some_and(|p| p.eq_ignore_ascii_case(&self.value)),
                };
            }
            FilterField::Attribute(name) => user.attribute(name),
        };
        match (candidate, self.op) {
            (None, _) => false,
            (Some(v), FilterOp::Equals) => v == self.value,
            (Some(v), FilterOp::Prefix) => v.starts_with(&self.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{UserSpec, UserStatus};
    use super::super::settings::PoolSettings;
    use super::*;

    fn f(field: FilterField, op: FilterOp, value: &str) -> Result<Option<Filter>, FilterError> {
        Ok(Some(Filter {
            field,
            op,
            value: value.to_owned(),
        }))
    }

    #[test]
    fn parses_the_documented_forms() {
        use FilterField::*;
        use FilterOp::*;
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse(r#"username = "alice""#), f(Username, Equals, "alice"));
        assert_eq!(parse(r#"email^="al""#), f(Attribute("email"), Prefix, "al"));
        assert_eq!(
            parse(r#"  cognito:user_status   =   "UNCONFIRMED"  "#),
            f(UserStatus, Equals, "UNCONFIRMED")
        );
        assert_eq!(
            parse(r#"family_name = "O\"Brien \\ co""#),
            f(Attribute("family_name"), Equals, r#"O"Brien \ co"#)
        );
        assert_eq!(
            parse(r#"status = "Enabled""#),
            f(Enabled, Equals, "Enabled")
        );
        assert_eq!(parse(r#"sub = """#), f(Attribute("sub"), Equals, ""));
    }

    #[test]
    fn rejects_malformed_filters() {
        for bad in [
            "username",
            r#"username "alice""#,
            r#"username == "alice""#,
            r#"username = alice"#,
            r#"username = "alice"#,
            r#"username = "alice" extra"#,
            r#"username = "alice\"#,
            r#"custom:team = "x""#,
            r#"address = "x""#,
            r#"= "x""#,
            r#"username ~= "x""#,
            r#"username = 'alice'"#,
        ] {
            assert_eq!(parse(bad), Err(FilterError), "{bad}");
        }
    }

    #[test]
    fn matches_with_cognito_case_rules() {
        let alice = User::from_spec(
            UserSpec::new("alice", UserStatus::Unconfirmed).with_attribute("given_name", "Alice"),
            &PoolSettings::default(),
        );
        let yes = |s: &str| {
            parse(s)
                .expect("valid")
                .expect("non-empty")
                .matches(&alice, false)
        };
        assert!(yes(r#"username = "alice""#));
        assert!(!yes(r#"username = "Alice""#), "username is case-sensitive");
        assert!(yes(r#"username ^= "al""#));
        assert!(yes(r#"cognito:user_status = "unconfirmed""#));
        assert!(yes(r#"cognito:user_status ^= "UNCON""#));
        assert!(!yes(r#"cognito:user_status = "CONFIRMED""#));
        assert!(yes(r#"status = "Enabled""#));
        assert!(!yes(r#"status = "enabled""#), "status is case-sensitive");
        assert!(yes(r#"email = "alice@example.com""#));
        assert!(yes(r#"given_name ^= "Ali""#));
        assert!(!yes(r#"phone_number ^= "+""#), "no phone, no match");
        // In a case-insensitive pool the username filter folds both sides.
        let fold = |s: &str| {
            let mut f = parse(s).expect("valid").expect("non-empty");
            f.fold_username();
            f.matches(&alice, true)
        };
        assert!(fold(r#"username = "ALICE""#));
        assert!(fold(r#"username ^= "Al""#));
        assert!(
            !fold(r#"email = "ALICE@example.com""#),
            "only the username folds"
        );
    }
}
