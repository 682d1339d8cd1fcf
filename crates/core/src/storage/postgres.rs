//! The PostgreSQL dialect of the core's SQL.
//!
//! The core writes its statements (and its migrations) once, in the SQLite
//! dialect both databases mostly share. [`statements`] turns one of them into
//! what PostgreSQL runs, so one set of statements and one set of versioned
//! migrations serve both backends; the differences it bridges are few and
//! each is tested here and by running every store test on both backends:
//!
//! - parameters: `?` and `?N` become `$N`, cast to the type of the value
//!   bound (`$1::BIGINT`), because PostgreSQL infers a parameter's type from
//!   its context and a 64-bit integer bound where it inferred `integer` (as in
//!   `$1 - 60`) is refused, while SQLite takes any value anywhere;
//! - column types: `INTEGER` is `BIGINT` (SQLite's integers are 64-bit),
//!   `REAL` is `DOUBLE PRECISION`, `BLOB` is `BYTEA`, and `INTEGER PRIMARY KEY
//!   AUTOINCREMENT` an identity column;
//! - functions: SQLite's `TOTAL(x)` (a float sum, 0.0 over no rows) and the
//!   scalar `MIN(a, b)` / `MAX(a, b)` (PostgreSQL's `LEAST` / `GREATEST`);
//! - `BEGIN IMMEDIATE` (SQLite's write lock taken up front) becomes `BEGIN`
//!   plus one transaction-scoped advisory lock, [`WRITE_LOCK`], so
//!   read-modify-write transactions serialise across every replica exactly as
//!   they do on one SQLite file: a budget can never be overspent; the hot
//!   path's [`super::BEGIN_ROW_LOCKED`] takes that lock *shared*, because
//!   its transactions lock the rows they change themselves (so requests of
//!   different keys no longer wait for each other across replicas);
//! - a statement that returns rows is wrapped so that its result is never
//!   empty ([`statements`], [`rows_of`]): real Spin 4.1 never answers a
//!   `spin:postgres` query with an empty result.
//!
//! What it does not bridge, the core's statements avoid: `INSERT OR …`,
//! unqualified column names inside `ON CONFLICT … DO UPDATE SET` expressions
//! (qualify them with the table name), division by a value that may be 0
//! (wrap it in `NULLIF`), and selecting columns that are neither grouped nor
//! aggregated.
//!
//! Pure text processing: no I/O.

use super::SqlValue;

/// The key of the advisory lock every write transaction takes on PostgreSQL
/// (the bytes of "DOL-WRIT"): one lock, like SQLite's one writer.
pub const WRITE_LOCK: i64 = 0x444F_4C2D_5752_4954;

/// One statement to run on PostgreSQL, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement in PostgreSQL's dialect.
    pub sql: String,
    /// Run it as a query and pass its rows through [`rows_of`]: it was a
    /// statement that returns rows, wrapped by [`statements`]. Otherwise run
    /// it as a command (`spin:postgres`' `execute`) and expect no rows.
    pub returns_rows: bool,
}

/// The statements PostgreSQL runs for one SQLite-dialect `sql` with `params`
/// bound: one statement, or two for `BEGIN IMMEDIATE` and
/// [`super::BEGIN_ROW_LOCKED`].
///
/// A statement that returns rows (a `SELECT`, `WITH` or `VALUES`, or one
/// with `RETURNING`) is wrapped so that it always yields at least one row:
/// real Spin 4.1's `spin:postgres` query never answers a query whose result
/// is empty (the guest waits forever), so the wrapped result is one marker
/// row when empty, and [`rows_of`] turns it back into the statement's rows.
/// Every other statement runs as a command, which Spin answers either way.
pub fn statements(sql: &str, params: &[SqlValue]) -> Vec<Statement> {
    let command = |sql: String| Statement {
        sql,
        returns_rows: false,
    };
    if sql.trim().eq_ignore_ascii_case("BEGIN IMMEDIATE") {
        return vec![
            command("BEGIN".to_owned()),
            command(format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})")),
        ];
    }
    if sql == super::BEGIN_ROW_LOCKED {
        return vec![
            command("BEGIN".to_owned()),
            command(format!("SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})")),
        ];
    }
    let translated = translate(sql, params);
    if !returns_rows(sql) {
        return vec![command(translated)];
    }
    // MATERIALIZED keeps the statement's own order for row_number().
    vec![Statement {
        sql: format!(
            "WITH dol_q AS MATERIALIZED ({translated}) SELECT dol_p.* FROM (SELECT 1) AS dol_one \
             LEFT JOIN (SELECT 1 AS dol_row, row_number() OVER () AS dol_n, dol_q.* FROM dol_q) \
             AS dol_p ON true ORDER BY dol_p.dol_n"
        ),
        returns_rows: true,
    }]
}

/// The rows of a statement [`statements`] wrapped: its own columns (the two
/// marker columns dropped), and none when it returned the empty marker row.
pub fn rows_of(wrapped: Vec<Vec<SqlValue>>) -> Vec<Vec<SqlValue>> {
    wrapped
        .into_iter()
        .filter(|row| row.first().is_some_and(|marker| *marker != SqlValue::Null))
        .map(|row| row.into_iter().skip(2).collect())
        .collect()
}

/// Whether `sql` returns rows: it starts with `SELECT`, `WITH` or `VALUES`,
/// or has a `RETURNING` clause.
fn returns_rows(sql: &str) -> bool {
    let tokens = tokenize(sql);
    let mut words = tokens.iter().filter_map(|t| match t {
        Token::Word(w) => Some(w.to_ascii_uppercase()),
        _ => None,
    });
    match words.next().as_deref() {
        Some("SELECT" | "WITH" | "VALUES") => true,
        Some(_) => words.any(|w| w == "RETURNING"),
        None => false,
    }
}

/// One SQLite-dialect statement in PostgreSQL's dialect (see the module
/// documentation for what changes).
pub fn translate(sql: &str, params: &[SqlValue]) -> String {
    let tokens = tokenize(sql);
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut next_param = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Param(explicit) => {
                let index = explicit.unwrap_or(next_param + 1);
                next_param = index;
                out.push('$');
                out.push_str(&index.to_string());
                if let Some(cast) = params.get(index - 1).and_then(cast_of) {
                    out.push_str("::");
                    out.push_str(cast);
                }
            }
            Token::Word(word) => {
                let upper = word.to_ascii_uppercase();
                match upper.as_str() {
                    "INTEGER" if is_autoincrement_key(&tokens, i) => {
                        out.push_str("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY");
                        // Skip `PRIMARY KEY AUTOINCREMENT` (and the spaces between).
                        i = skip_words(&tokens, i, 3);
                    }
                    "INTEGER" => out.push_str("BIGINT"),
                    "REAL" => out.push_str("DOUBLE PRECISION"),
                    "BLOB" => out.push_str("BYTEA"),
                    "TOTAL" if matching_paren(&tokens, i + 1).is_some() => {
                        let close = matching_paren(&tokens, i + 1).unwrap_or(i + 1);
                        out.push_str("(COALESCE(SUM(");
                        out.push_str(&render(&tokens[i + 2..close], params, &mut next_param));
                        out.push_str("), 0)::DOUBLE PRECISION)");
                        i = close;
                    }
                    "MIN" | "MAX" if matching_paren(&tokens, i + 1).is_some() => {
                        let close = matching_paren(&tokens, i + 1).unwrap_or(i + 1);
                        let scalar = tokens[i + 2..close]
                            .iter()
                            .scan(0i32, |depth, t| {
                                match t {
                                    Token::Punct('(') => *depth += 1,
                                    Token::Punct(')') => *depth -= 1,
                                    _ => {}
                                }
                                Some(*depth == 0 && *t == Token::Punct(','))
                            })
                            .any(|top_level_comma| top_level_comma);
                        out.push_str(match (scalar, upper.as_str()) {
                            (true, "MIN") => "LEAST",
                            (true, _) => "GREATEST",
                            (false, _) => word,
                        });
                    }
                    _ => out.push_str(word),
                }
            }
            Token::Text(text) => out.push_str(text),
            Token::Punct(c) => out.push(*c),
        }
        i += 1;
    }
    out
}

/// Renders a slice of tokens (the inside of a rewritten call), continuing
/// the parameter numbering.
fn render(tokens: &[Token<'_>], params: &[SqlValue], next_param: &mut usize) -> String {
    // Re-joining the tokens and translating them again keeps one code path;
    // explicit `?N` parameters keep their numbers, plain `?` ones are made
    // explicit first so the numbering continues where the caller left off.
    let mut inner = String::new();
    for token in tokens {
        match token {
            Token::Param(explicit) => {
                let index = explicit.unwrap_or(*next_param + 1);
                *next_param = index;
                inner.push('?');
                inner.push_str(&index.to_string());
            }
            Token::Word(w) | Token::Text(w) => inner.push_str(w),
            Token::Punct(c) => inner.push(*c),
        }
    }
    translate(&inner, params)
}

/// A PostgreSQL `numeric` value, read as base-10 text (Spin's `decimal`),
/// as a core value: an integer when the text is one (`SUM` of integers is
/// `numeric` on PostgreSQL and an integer on SQLite), otherwise a float (as
/// `AVG` is on SQLite); text only if it is no number at all.
pub fn numeric(text: &str) -> SqlValue {
    if let Ok(n) = text.parse::<i64>() {
        SqlValue::Integer(n)
    } else if let Ok(r) = text.parse::<f64>() {
        SqlValue::Real(r)
    } else {
        SqlValue::Text(text.to_owned())
    }
}

/// The PostgreSQL type a bound value is cast to (none for `NULL`, which
/// takes the type its context gives it).
fn cast_of(value: &SqlValue) -> Option<&'static str> {
    match value {
        SqlValue::Null => None,
        SqlValue::Integer(_) => Some("BIGINT"),
        SqlValue::Real(_) => Some("DOUBLE PRECISION"),
        SqlValue::Text(_) => Some("TEXT"),
        SqlValue::Blob(_) => Some("BYTEA"),
    }
}

/// A lexical piece of a statement. Quoted strings, quoted identifiers,
/// comments and whitespace are [`Token::Text`] and pass through untouched.
#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    /// `?` (None) or `?N`.
    Param(Option<usize>),
    /// A bare word: keyword, identifier or number.
    Word(&'a str),
    /// Anything kept as it is.
    Text(&'a str),
    /// One punctuation character.
    Punct(char),
}

fn tokenize(sql: &str) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'`' => {
                // A quoted string or identifier; a doubled quote escapes itself.
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == c {
                        if bytes.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                tokens.push(Token::Text(&sql[start..i]));
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                tokens.push(Token::Text(&sql[start..i]));
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(bytes.len());
                tokens.push(Token::Text(&sql[start..i]));
            }
            b'?' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                tokens.push(Token::Param(sql[start + 1..i].parse().ok()));
            }
            c if c.is_ascii_whitespace() => {
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                tokens.push(Token::Text(&sql[start..i]));
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                tokens.push(Token::Word(&sql[start..i]));
            }
            _ => {
                tokens.push(Token::Punct(char::from(c)));
                i += 1;
            }
        }
    }
    tokens
}

/// The index of the `n`th word after `from` (whitespace skipped).
fn skip_words(tokens: &[Token<'_>], from: usize, n: usize) -> usize {
    let mut seen = 0;
    let mut i = from;
    while seen < n && i + 1 < tokens.len() {
        i += 1;
        if matches!(tokens[i], Token::Word(_)) {
            seen += 1;
        }
    }
    i
}

/// The words after position `i`, whitespace skipped.
fn words_after<'t>(tokens: &'t [Token<'_>], i: usize) -> impl Iterator<Item = &'t str> {
    tokens[i + 1..]
        .iter()
        .filter(|t| !matches!(t, Token::Text(s) if s.trim().is_empty()))
        .map_while(|t| match t {
            Token::Word(w) => Some(*w),
            _ => None,
        })
}

fn is_autoincrement_key(tokens: &[Token<'_>], i: usize) -> bool {
    let next: Vec<String> = words_after(tokens, i)
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    next == ["PRIMARY", "KEY", "AUTOINCREMENT"]
}

/// The index of the `)` closing the `(` at `open`; `None` when there is no
/// `(` there or it is never closed (the database then reports the error).
fn matching_paren(tokens: &[Token<'_>], open: usize) -> Option<usize> {
    if tokens.get(open) != Some(&Token::Punct('(')) {
        return None;
    }
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str, params: &[SqlValue]) -> String {
        translate(sql, params)
    }

    #[test]
    fn parameters_are_numbered_and_cast_to_the_bound_type() {
        let params = [
            SqlValue::Integer(1),
            SqlValue::Text("a".into()),
            SqlValue::Real(0.5),
            SqlValue::Blob(vec![1]),
            SqlValue::Null,
        ];
        assert_eq!(
            pg("SELECT ?, ?, ?, ?, ?", &params),
            "SELECT $1::BIGINT, $2::TEXT, $3::DOUBLE PRECISION, $4::BYTEA, $5"
        );
        assert_eq!(
            pg("UPDATE t SET a = ?2 WHERE b = ?1 AND c = ?2", &params[..2]),
            "UPDATE t SET a = $2::TEXT WHERE b = $1::BIGINT AND c = $2::TEXT"
        );
    }

    #[test]
    fn quoted_text_and_comments_are_left_alone() {
        assert_eq!(
            pg(
                "SELECT 'a ? INTEGER', \"REAL\" -- ? TOTAL(x)\nFROM t WHERE a = ?",
                &[SqlValue::Integer(1)]
            ),
            "SELECT 'a ? INTEGER', \"REAL\" -- ? TOTAL(x)\nFROM t WHERE a = $1::BIGINT"
        );
        assert_eq!(pg("SELECT 'it''s ?'", &[]), "SELECT 'it''s ?'");
    }

    #[test]
    fn column_types_widen_and_autoincrement_becomes_identity() {
        assert_eq!(
            pg(
                "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, \
                 q REAL, b BLOB, s TEXT)",
                &[]
            ),
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
             n BIGINT NOT NULL, q DOUBLE PRECISION, b BYTEA, s TEXT)"
        );
        assert_eq!(
            pg("SELECT CAST(v AS INTEGER), CAST(w AS REAL) FROM t", &[]),
            "SELECT CAST(v AS BIGINT), CAST(w AS DOUBLE PRECISION) FROM t"
        );
        // A plain integer key stays a plain key.
        assert_eq!(
            pg("CREATE TABLE t (v INTEGER PRIMARY KEY)", &[]),
            "CREATE TABLE t (v BIGINT PRIMARY KEY)"
        );
    }

    #[test]
    fn total_becomes_a_float_sum_that_is_zero_over_no_rows() {
        assert_eq!(
            pg(
                "SELECT TOTAL(a * ?) FROM t WHERE b = ?",
                &[SqlValue::Integer(2), SqlValue::Integer(3)]
            ),
            "SELECT (COALESCE(SUM(a * $1::BIGINT), 0)::DOUBLE PRECISION) FROM t WHERE b = $2::BIGINT"
        );
        // A column that happens to be called `total` is not a call.
        assert_eq!(pg("SELECT total FROM t", &[]), "SELECT total FROM t");
    }

    #[test]
    fn scalar_min_and_max_become_least_and_greatest_but_aggregates_stay() {
        assert_eq!(
            pg(
                "SELECT MIN(a, ?), MAX(MIN(b), c), max(d) FROM t",
                &[SqlValue::Integer(1)]
            ),
            "SELECT LEAST(a, $1::BIGINT), GREATEST(MIN(b), c), max(d) FROM t"
        );
        assert_eq!(
            pg("SELECT MAX(f(a, b)) FROM t", &[]),
            "SELECT MAX(f(a, b)) FROM t"
        );
    }

    #[test]
    fn begin_immediate_takes_the_one_write_lock_and_commands_run_as_commands() {
        let sqls = |sql| -> Vec<(String, bool)> {
            statements(sql, &[])
                .into_iter()
                .map(|s| (s.sql, s.returns_rows))
                .collect()
        };
        assert_eq!(
            sqls("BEGIN IMMEDIATE"),
            vec![
                ("BEGIN".to_owned(), false),
                (format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"), false)
            ]
        );
        assert_eq!(
            sqls(crate::storage::BEGIN_ROW_LOCKED),
            vec![
                ("BEGIN".to_owned(), false),
                (
                    format!("SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})"),
                    false
                )
            ]
        );
        assert_eq!(sqls("COMMIT"), vec![("COMMIT".to_owned(), false)]);
        assert_eq!(
            sqls("UPDATE t SET a = 1"),
            vec![("UPDATE t SET a = 1".to_owned(), false)]
        );
    }

    #[test]
    fn statements_that_return_rows_are_wrapped_and_unwrapped() {
        for sql in [
            "SELECT a FROM t",
            "  with x AS (SELECT 1) SELECT * FROM x",
            "INSERT INTO t (a) VALUES (1) RETURNING a",
            "DELETE FROM t RETURNING 1",
        ] {
            let plan = statements(sql, &[]);
            assert_eq!(plan.len(), 1, "{sql}");
            assert!(plan[0].returns_rows, "{sql}");
            assert!(
                plan[0].sql.starts_with("WITH dol_q AS MATERIALIZED ("),
                "{sql}"
            );
        }
        // The empty marker row is no row; real rows lose the two markers.
        assert!(rows_of(vec![vec![SqlValue::Null, SqlValue::Null, SqlValue::Null]]).is_empty());
        assert_eq!(
            rows_of(vec![
                vec![
                    SqlValue::Integer(1),
                    SqlValue::Integer(1),
                    SqlValue::Text("a".into())
                ],
                vec![SqlValue::Integer(1), SqlValue::Integer(2), SqlValue::Null],
            ]),
            vec![vec![SqlValue::Text("a".into())], vec![SqlValue::Null]]
        );
        // A column value of NULL in a real row is kept.
        assert_eq!(rows_of(vec![]), Vec::<Vec<SqlValue>>::new());
    }

    #[test]
    fn numerics_read_as_integers_when_whole_and_floats_otherwise() {
        assert_eq!(numeric("42"), SqlValue::Integer(42));
        assert_eq!(numeric("-7"), SqlValue::Integer(-7));
        assert_eq!(numeric("5.0000000000000000"), SqlValue::Real(5.0));
        assert_eq!(numeric("0.25"), SqlValue::Real(0.25));
        assert!(matches!(numeric("NaN"), SqlValue::Real(r) if r.is_nan()));
        assert_eq!(numeric("x"), SqlValue::Text("x".into()));
    }

    #[test]
    fn unbalanced_or_odd_input_does_not_panic() {
        for sql in [
            "TOTAL(", "MIN(a,", "'open", "/* open", "?999", "?", "\"", "é ? ü",
        ] {
            let _ = translate(sql, &[SqlValue::Integer(1)]);
        }
    }
}
