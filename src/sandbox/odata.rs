//! The OData subset the list call understands: `$top`, `$skip` and a `$filter` of comparisons on
//! `lastUpdateTime`, `createdTime`, `status` and `assignedTo` joined with `and`. Anything else is
//! refused with a message saying what is not supported, instead of being silently ignored.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::state::{IncidentView, parse_timestamp};

/// A parsed list query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub top: Option<usize>,
    pub skip: usize,
    pub filter: Option<Filter>,
    /// The `$filter` text as received (decoded), to carry into `@odata.nextLink`.
    pub filter_text: Option<String>,
}

impl ListQuery {
    /// Parses the raw query string of `GET /api/incidents`.
    pub fn parse(raw_query: Option<&str>, max_top: usize) -> Result<ListQuery, String> {
        let mut query = ListQuery {
            top: None,
            skip: 0,
            filter: None,
            filter_text: None,
        };
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in decode_query(raw_query.unwrap_or_default()) {
            if seen.contains(&key) {
                return Err(format!("The query option '{key}' is given more than once."));
            }
            seen.push(key.clone());
            match key.as_str() {
                "$top" => {
                    let top: usize = value.trim().parse().map_err(|_| {
                        format!("The value '{value}' of $top is not a non-negative integer.")
                    })?;
                    if top > max_top {
                        return Err(format!(
                            "The limit of '{max_top}' for Top query has been exceeded. The value from the incoming request is '{top}'."
                        ));
                    }
                    query.top = Some(top);
                }
                "$skip" => {
                    query.skip = value.trim().parse().map_err(|_| {
                        format!("The value '{value}' of $skip is not a non-negative integer.")
                    })?;
                }
                "$filter" => {
                    query.filter = Some(Filter::parse(&value)?);
                    query.filter_text = Some(value);
                }
                other if other.starts_with('$') => {
                    return Err(format!(
                        "The query option '{other}' is not supported. Supported options: $filter, $top, $skip."
                    ));
                }
                // Non-OData parameters (e.g. a cache buster) are ignored, as web APIs do.
                _ => {}
            }
        }
        Ok(query)
    }

    /// The query string of the next page: the same filter and `$top`, `$skip` moved on.
    pub fn next_page_query(&self, next_skip: usize) -> String {
        let mut parts = Vec::new();
        if let Some(filter) = &self.filter_text {
            parts.push(format!("$filter={}", encode_component(filter)));
        }
        if let Some(top) = self.top {
            parts.push(format!("$top={top}"));
        }
        parts.push(format!("$skip={next_skip}"));
        parts.join("&")
    }
}

/// Splits `a=1&b=2` and percent-decodes (`+` is a space) each key and value.
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding; invalid escapes are kept as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A conjunction of comparisons.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq)]
struct Clause {
    property: Property,
    op: Op,
    value: Literal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Property {
    LastUpdateTime,
    CreatedTime,
    Status,
    AssignedTo,
}

const PROPERTIES: &str = "lastUpdateTime, createdTime, status, assignedTo";

impl Property {
    fn parse(name: &str) -> Option<Property> {
        match name {
            "lastUpdateTime" => Some(Property::LastUpdateTime),
            "createdTime" => Some(Property::CreatedTime),
            "status" => Some(Property::Status),
            "assignedTo" => Some(Property::AssignedTo),
            _ => None,
        }
    }

    fn is_time(self) -> bool {
        matches!(self, Property::LastUpdateTime | Property::CreatedTime)
    }

    fn name(self) -> &'static str {
        match self {
            Property::LastUpdateTime => "lastUpdateTime",
            Property::CreatedTime => "createdTime",
            Property::Status => "status",
            Property::AssignedTo => "assignedTo",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

impl Op {
    fn parse(word: &str) -> Option<Op> {
        match word {
            "eq" => Some(Op::Eq),
            "ge" => Some(Op::Ge),
            "gt" => Some(Op::Gt),
            "le" => Some(Op::Le),
            "lt" => Some(Op::Lt),
            _ => None,
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ge => ordering != Ordering::Less,
            Op::Gt => ordering == Ordering::Greater,
            Op::Le => ordering != Ordering::Greater,
            Op::Lt => ordering == Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Time(DateTime<Utc>),
    Text(String),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => value.push(c),
                        None => return Err("Unterminated string literal in $filter.".into()),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err("The $filter expression is empty.".into());
        }
        for (i, token) in tokens.iter().enumerate() {
            if matches!(token, Token::Open | Token::Close | Token::Comma) {
                if let (Some(Token::Word(name)), Token::Open) =
                    (i.checked_sub(1).and_then(|p| tokens.get(p)), token)
                {
                    return Err(format!(
                        "The function '{name}' is not supported in $filter. Only comparisons (eq, ge, gt, le, lt) joined with 'and' are supported."
                    ));
                }
                return Err(
                    "Parentheses are not supported in $filter. Only comparisons joined with 'and' are supported."
                        .into(),
                );
            }
        }
        let mut clauses = Vec::new();
        let mut rest = tokens.as_slice();
        loop {
            let (clause, after) = parse_clause(rest)?;
            clauses.push(clause);
            match after {
                [] => break,
                [Token::Word(word), more @ ..] if word.eq_ignore_ascii_case("and") => {
                    if more.is_empty() {
                        return Err("The $filter expression ends after 'and'.".into());
                    }
                    rest = more;
                }
                [Token::Word(word), ..] if word.eq_ignore_ascii_case("or") => {
                    return Err(
                        "The 'or' operator is not supported in $filter. Only 'and' is supported."
                            .into(),
                    );
                }
                [other, ..] => {
                    return Err(format!(
                        "Unexpected {} in $filter; expected 'and' between comparisons.",
                        describe(other)
                    ));
                }
            }
        }
        Ok(Filter { clauses })
    }

    /// True when every comparison holds for the incident.
    pub fn matches(&self, incident: &IncidentView<'_>) -> bool {
        self.clauses.iter().all(|clause| clause.matches(incident))
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(w) => format!("'{w}'"),
        Token::Quoted(q) => format!("string '{q}'"),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::Comma => "','".into(),
    }
}

fn parse_clause(tokens: &[Token]) -> Result<(Clause, &[Token]), String> {
    let (name, rest) = match tokens {
        [Token::Word(word), ..] if word.eq_ignore_ascii_case("not") => {
            return Err("The 'not' operator is not supported in $filter.".into());
        }
        [Token::Word(name), rest @ ..] => (name, rest),
        [other, ..] => {
            return Err(format!(
                "Expected a property name in $filter, found {}.",
                describe(other)
            ));
        }
        [] => return Err("The $filter expression is incomplete.".into()),
    };
    let property = Property::parse(name).ok_or_else(|| {
        format!("Filtering on '{name}' is not supported. Supported properties: {PROPERTIES}.")
    })?;
    let (op, rest) = match rest {
        [Token::Word(word), rest @ ..] => {
            let op = Op::parse(word).ok_or_else(|| {
                format!(
                    "The operator '{word}' is not supported in $filter. Supported operators: eq, ge, gt, le, lt."
                )
            })?;
            (op, rest)
        }
        _ => {
            return Err(format!(
                "Expected an operator (eq, ge, gt, le, lt) after '{name}' in $filter."
            ));
        }
    };
    let (value, rest) = match rest {
        [Token::Word(word), rest @ ..] if word == "null" => (Literal::Null, rest),
        [Token::Word(word) | Token::Quoted(word), rest @ ..] if property.is_time() => {
            let time = parse_timestamp(word).ok_or_else(|| {
                format!(
                    "'{word}' is not a valid timestamp for '{}'; use ISO 8601, e.g. 2020-09-06T00:00:00Z.",
                    property.name()
                )
            })?;
            (Literal::Time(time), rest)
        }
        [Token::Quoted(text), rest @ ..] => (Literal::Text(text.clone()), rest),
        [Token::Word(word), ..] => {
            return Err(format!(
                "Expected a quoted string for '{}' in $filter, e.g. {} eq 'Active'; found '{word}'.",
                property.name(),
                property.name()
            ));
        }
        _ => {
            return Err(format!(
                "Expected a value after '{name} {}' in $filter.",
                match op {
                    Op::Eq => "eq",
                    Op::Ge => "ge",
                    Op::Gt => "gt",
                    Op::Le => "le",
                    Op::Lt => "lt",
                }
            ));
        }
    };
    if value == Literal::Null && op != Op::Eq {
        return Err("null can only be compared with 'eq' in $filter.".into());
    }
    Ok((
        Clause {
            property,
            op,
            value,
        },
        rest,
    ))
}

impl Clause {
    fn matches(&self, incident: &IncidentView<'_>) -> bool {
        match self.property {
            Property::LastUpdateTime => self.compare_time(incident.updated),
            Property::CreatedTime => self.compare_time(incident.created),
            Property::Status => self.compare_text(incident.status),
            Property::AssignedTo => self.compare_text(incident.assigned_to),
        }
    }

    fn compare_time(&self, actual: Option<DateTime<Utc>>) -> bool {
        match (&self.value, actual) {
            (Literal::Null, actual) => actual.is_none(),
            (Literal::Time(wanted), Some(actual)) => self.op.holds(actual.cmp(wanted)),
            _ => false,
        }
    }

    fn compare_text(&self, actual: Option<&str>) -> bool {
        match (&self.value, actual) {
            (Literal::Null, actual) => actual.is_none(),
            (Literal::Text(wanted), Some(actual)) => self.op.holds(actual.cmp(wanted.as_str())),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(updated: &str, status: &'a str, assigned: Option<&'a str>) -> IncidentView<'a> {
        IncidentView {
            created: parse_timestamp("2020-09-06T12:00:00Z"),
            updated: parse_timestamp(updated),
            status: Some(status),
            assigned_to: assigned,
        }
    }

    #[test]
    fn unquoted_and_quoted_timestamps_are_accepted() {
        let incident = view("2020-09-06T14:46:57.29Z", "Active", None);
        for text in [
            "lastUpdateTime ge 2020-09-06T00:00:00Z",
            "lastUpdateTime ge '2020-09-06T00:00:00Z'",
            "lastUpdateTime gt 2020-09-06T14:46:57.28Z and lastUpdateTime lt 2020-09-07T00:00:00Z",
            "createdTime eq 2020-09-06T12:00:00Z",
            "createdTime le 2020-09-06T12:00:00Z",
        ] {
            assert!(Filter::parse(text).unwrap().matches(&incident), "{text}");
        }
        assert!(
            !Filter::parse("lastUpdateTime lt 2020-09-06T00:00:00Z")
                .unwrap()
                .matches(&incident)
        );
    }

    #[test]
    fn strings_compare_exactly_and_null_matches_unassigned() {
        let incident = view(
            "2020-09-06T14:46:57Z",
            "Active",
            Some("o'brien@contoso.com"),
        );
        assert!(
            Filter::parse("status eq 'Active'")
                .unwrap()
                .matches(&incident)
        );
        assert!(
            !Filter::parse("status eq 'active'")
                .unwrap()
                .matches(&incident)
        );
        assert!(
            Filter::parse("assignedTo eq 'o''brien@contoso.com' and status eq 'Active'")
                .unwrap()
                .matches(&incident)
        );
        let unassigned = view("2020-09-06T14:46:57Z", "Active", None);
        assert!(
            Filter::parse("assignedTo eq null")
                .unwrap()
                .matches(&unassigned)
        );
        assert!(
            !Filter::parse("assignedTo eq null")
                .unwrap()
                .matches(&incident)
        );
    }

    #[test]
    fn unsupported_filters_say_what_is_unsupported() {
        let cases = [
            ("severity eq 'High'", "'severity'"),
            ("status ne 'Active'", "'ne'"),
            ("status eq 'Active' or status eq 'Resolved'", "'or'"),
            ("contains(assignedTo,'x')", "function 'contains'"),
            ("(status eq 'Active')", "Parentheses"),
            ("status eq Active", "quoted string"),
            ("lastUpdateTime ge yesterday", "not a valid timestamp"),
            ("status eq 'Active' and", "ends after 'and'"),
            ("status eq 'unterminated", "Unterminated"),
            ("not status eq 'Active'", "'not'"),
            ("status", "operator"),
            ("", "empty"),
            ("status eq 'Active' status eq 'Active'", "expected 'and'"),
            ("lastUpdateTime gt null", "null"),
        ];
        for (text, expected) in cases {
            let err = Filter::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn query_options_are_validated() {
        let q =
            ListQuery::parse(Some("$top=10&$skip=20&$filter=status+eq+%27Active%27"), 100).unwrap();
        assert_eq!(q.top, Some(10));
        assert_eq!(q.skip, 20);
        assert_eq!(q.filter_text.as_deref(), Some("status eq 'Active'"));
        assert!(ListQuery::parse(Some("$top=101"), 100).is_err());
        assert!(ListQuery::parse(Some("$top=-1"), 100).is_err());
        assert!(ListQuery::parse(Some("$skip=x"), 100).is_err());
        assert!(ListQuery::parse(Some("$orderby=createdTime"), 100).is_err());
        assert!(ListQuery::parse(Some("$top=1&$top=2"), 100).is_err());
        assert!(ListQuery::parse(Some("cachebuster=1"), 100).is_ok());
        assert!(ListQuery::parse(None, 100).is_ok());
    }

    #[test]
    fn next_page_query_round_trips_the_filter() {
        let q = ListQuery::parse(
            Some("$filter=assignedTo%20eq%20%27a%26b%2Bc%27&$top=5"),
            100,
        )
        .unwrap();
        let next = q.next_page_query(5);
        let again = ListQuery::parse(Some(&next), 100).unwrap();
        assert_eq!(again.filter_text.as_deref(), Some("assignedTo eq 'a&b+c'"));
        assert_eq!(again.top, Some(5));
        assert_eq!(again.skip, 5);
    }
}
