//! The mapping expression language: parsed and type-checked when a mapping
//! loads, evaluated per record with no allocation on the common paths.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | cmp
//! cmp     := primary (("==" | "!=") primary | "in" "[" primary ("," primary)* "]")?
//! primary := 'text' | "text" | 123 | true | false | $column | name(args) | (expr)
//! ```
//!
//! Why our own language rather than an embedded one: the set of things a
//! mapping does is small (read a column, translate a code, parse a date, choose
//! between values), and owning the grammar lets every error point at the exact
//! character, every column reference resolve to an index at load, and every
//! date format compile once.

use std::borrow::Cow;
use std::ops::Range;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::text::closest;

/// A load-time error inside one expression, with its span relative to the
/// expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub span: Range<usize>,
    pub message: String,
    pub hint: Option<String>,
}

fn err(span: Range<usize>, message: impl Into<String>) -> ExprError {
    ExprError {
        span,
        message: message.into(),
        hint: None,
    }
}

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Bool,
    Int,
    Date,
    DateTime,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Date => "date",
            Ty::DateTime => "datetime",
        }
    }
}

/// What an expression can see while it is compiled: declared columns, value
/// maps and the connector's time handling.
pub trait Scope {
    /// The slot of declared column `name`.
    fn column(&self, name: &str) -> Option<usize>;
    /// Names of declared columns, for "did you mean" hints.
    fn column_names(&self) -> Vec<String>;
    /// The index of value map `name`.
    fn value_map(&self, name: &str) -> Option<usize>;
}

/// A compiled date or date-time format.
#[derive(Debug, Clone)]
pub struct DateFormat {
    pub text: String,
    items: Vec<Item<'static>>,
    /// The format carries its own UTC offset (`%z`), so the connector's zone
    /// is not applied.
    has_offset: bool,
    has_time: bool,
    /// A hand-written parser for the most common formats; chrono is the
    /// fallback (and the reference: the fast path accepts a subset of what
    /// chrono accepts, never more).
    fast: FastDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FastDate {
    None,
    /// `%m/%d/%Y`
    MonthDayYear,
    /// `%Y-%m-%d`
    YearMonthDay,
    /// `excel_serial`: an Excel day number in the 1900 date system, as an
    /// unformatted cell shows it (`46346`, `46346.5`: the day is kept).
    ExcelSerial,
}

/// The format name `date()` takes for Excel serial numbers.
pub const EXCEL_SERIAL: &str = "excel_serial";

/// An Excel 1900-system serial number as a date. Excel counts 1900-02-29,
/// a day that never was (Lotus 1-2-3's bug, kept for compatibility): serials
/// from 61 on are one day ahead of a plain count from 1899-12-31.
fn excel_serial(s: &str) -> Option<NaiveDate> {
    let v: f64 = s.trim().parse().ok()?;
    // 1 is 1900-01-01; 2958465 is 9999-12-31, Excel's last day.
    if !(1.0..2_958_466.0).contains(&v) {
        return None;
    }
    let days = v.trunc() as i64;
    let (epoch, days) = if days >= 61 {
        (NaiveDate::from_ymd_opt(1899, 12, 30)?, days)
    } else {
        (NaiveDate::from_ymd_opt(1899, 12, 31)?, days)
    };
    if days == 60 {
        return None; // 1900-02-29
    }
    epoch.checked_add_signed(chrono::Duration::days(days))
}

/// `a<sep>b<sep>c`, exactly three parts.
fn three_parts(b: &[u8], sep: u8) -> Option<(&[u8], &[u8], &[u8])> {
    let mut it = b.split(|c| *c == sep);
    let parts = (it.next()?, it.next()?, it.next()?);
    it.next().is_none().then_some(parts)
}

/// Parses 1-2 digits (`max_len` 2) or exactly 4 digits (`max_len` 4).
fn digits_n(s: &[u8], min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

impl FastDate {
    fn parse(self, s: &str) -> Option<NaiveDate> {
        let b = s.as_bytes();
        let (y, m, d) = match self {
            FastDate::None => return None,
            FastDate::ExcelSerial => return excel_serial(s),
            FastDate::MonthDayYear => {
                let (m, d, y) = three_parts(b, b'/')?;
                (y, m, d)
            }
            FastDate::YearMonthDay => three_parts(b, b'-')?,
        };
        let (y, m, d) = (digits_n(y, 4, 4)?, digits_n(m, 1, 2)?, digits_n(d, 1, 2)?);
        NaiveDate::from_ymd_opt(y as i32, m, d)
    }
}

impl DateFormat {
    /// Compiles a strftime-style format, rejecting specifiers chrono does not
    /// know and formats that cannot name a calendar day.
    pub fn compile(text: &str, want_time: bool) -> Result<DateFormat, String> {
        if text == EXCEL_SERIAL {
            if want_time {
                return Err(format!(
                    "`{EXCEL_SERIAL}` is a date format: use date() (a serial's time of day is not read)"
                ));
            }
            return Ok(DateFormat {
                text: text.to_string(),
                items: Vec::new(),
                has_offset: false,
                has_time: false,
                fast: FastDate::ExcelSerial,
            });
        }
        check_specifiers(text)?;
        let items = StrftimeItems::new(text)
            .parse_to_owned()
            .map_err(|_| format!("invalid date format `{text}`"))?;
        let spec = |c: &str| text.contains(c);
        let has_year = spec("%Y") || spec("%y") || spec("%F") || spec("%D") || spec("%G");
        let has_day = spec("%d") || spec("%e") || spec("%j") || spec("%F") || spec("%D");
        if !has_year || !has_day {
            return Err(format!(
                "date format `{text}` does not name a full date (it needs a year and a day)"
            ));
        }
        let has_time = spec("%H") || spec("%I") || spec("%T") || spec("%R") || spec("%M");
        if want_time && !has_time {
            return Err(format!(
                "datetime format `{text}` has no time of day; use date() for date-only values"
            ));
        }
        let has_offset = spec("%z") || spec("%:z") || spec("%#z");
        let fast = match text {
            "%m/%d/%Y" if !want_time => FastDate::MonthDayYear,
            "%Y-%m-%d" if !want_time => FastDate::YearMonthDay,
            _ => FastDate::None,
        };
        Ok(DateFormat {
            text: text.to_string(),
            items,
            has_offset,
            has_time,
            fast,
        })
    }

    fn parse(&self, s: &str) -> Option<Parsed> {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, s, self.items.iter()).ok()?;
        Some(parsed)
    }
}

/// Rejects strftime specifiers chrono would not parse, naming the culprit.
fn check_specifiers(text: &str) -> Result<(), String> {
    const KNOWN: &str = "YCymbBhdeaAwuUWGgVjDxFvHkIlPpMSfZzTRXrstn%";
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        // Padding flags, then `.3f`/`:z` style modifiers.
        while matches!(chars.peek(), Some('-' | '_' | '0' | '#' | ':' | '.' | '1'..='9')) {
            chars.next();
        }
        match chars.next() {
            Some(spec) if KNOWN.contains(spec) => {}
            Some(spec) => {
                return Err(format!(
                    "invalid date format `{text}`: unknown specifier `%{spec}`"
                ))
            }
            None => return Err(format!("invalid date format `{text}`: it ends with a lone `%`")),
        }
    }
    Ok(())
}

/// Built-in functions. The set is closed, so it is an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Trim,
    Upper,
    Lower,
    Map,
    Date,
    DateTime,
    Coalesce,
    Concat,
    If,
    Empty,
    Present,
    Int,
    Digits,
    /// `part(text, 'sep', n)`: the n-th (1-based) piece of text split at
    /// `sep`, e.g. the end of an X12 RD8 range `20260101-20261231`.
    Part,
}

impl Func {
    pub const ALL: &'static [(&'static str, Func)] = &[
        ("trim", Func::Trim),
        ("upper", Func::Upper),
        ("lower", Func::Lower),
        ("map", Func::Map),
        ("date", Func::Date),
        ("datetime", Func::DateTime),
        ("coalesce", Func::Coalesce),
        ("concat", Func::Concat),
        ("if", Func::If),
        ("empty", Func::Empty),
        ("present", Func::Present),
        ("int", Func::Int),
        ("digits", Func::Digits),
        ("part", Func::Part),
    ];

    fn lookup(name: &str) -> Option<Func> {
        Func::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
}

/// A compiled expression node.
#[derive(Debug, Clone)]
pub enum Expr {
    Text(String),
    Int(i64),
    Bool(bool),
    Column {
        slot: usize,
        name: String,
    },
    Unary(Func, Box<Expr>),
    Map {
        map: usize,
        arg: Box<Expr>,
    },
    Part {
        arg: Box<Expr>,
        sep: String,
        n: usize,
    },
    Date {
        arg: Box<Expr>,
        formats: Vec<DateFormat>,
        time: bool,
        column: Option<String>,
    },
    Coalesce(Vec<Expr>),
    Concat(Vec<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Eq {
        left: Box<Expr>,
        right: Box<Expr>,
        negate: bool,
    },
    In {
        arg: Box<Expr>,
        list: Vec<String>,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// A compiled expression with its type.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub expr: Expr,
    pub ty: Ty,
    pub source: String,
}

impl Compiled {
    /// The literal text, when the whole expression is one string literal.
    pub fn as_literal(&self) -> Option<&str> {
        match &self.expr {
            Expr::Text(t) => Some(t),
            _ => None,
        }
    }
    /// The value map this expression's result comes from, when it is `map(...)`.
    pub fn as_map(&self) -> Option<usize> {
        match &self.expr {
            Expr::Map { map, .. } => Some(*map),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    Int(i64),
    Ident(String),
    Column(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    EqEq,
    NotEq,
    End,
}

fn lex(src: &str) -> Result<Vec<(Tok, Range<usize>)>, ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => out.push((Tok::LParen, i..i + 1)),
            b')' => out.push((Tok::RParen, i..i + 1)),
            b'[' => out.push((Tok::LBracket, i..i + 1)),
            b']' => out.push((Tok::RBracket, i..i + 1)),
            b',' => out.push((Tok::Comma, i..i + 1)),
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                out.push((Tok::EqEq, i..i + 2));
                i += 2;
                continue;
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                out.push((Tok::NotEq, i..i + 2));
                i += 2;
                continue;
            }
            b'\'' | b'"' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(err(start..src.len(), "unterminated string literal")),
                        Some(&b) if b == quote => break,
                        Some(b'\\') if bytes.get(i + 1) == Some(&quote) => {
                            text.push(quote as char);
                            i += 2;
                        }
                        Some(_) => {
                            let ch = src[i..].chars().next().expect("index is on a char boundary");
                            text.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                i += 1;
                out.push((Tok::Text(text), start..i));
                continue;
            }
            b'$' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if i == start + 1 {
                    return Err(err(start..start + 1, "`$` must be followed by a column name"));
                }
                out.push((Tok::Column(src[start + 1..i].to_string()), start..i));
                continue;
            }
            b'0'..=b'9' | b'-' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let n = src[start..i]
                    .parse::<i64>()
                    .map_err(|_| err(start..i, "invalid number"))?;
                out.push((Tok::Int(n), start..i));
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push((Tok::Ident(src[start..i].to_string()), start..i));
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().expect("index is on a char boundary");
                let hint = match ch {
                    '=' => Some("comparison is `==`"),
                    '&' | '|' => Some("use `and` / `or`"),
                    _ => None,
                };
                let mut e = err(i..i + ch.len_utf8(), format!("unexpected character `{ch}`"));
                e.hint = hint.map(str::to_string);
                return Err(e);
            }
        }
        i += 1;
    }
    out.push((Tok::End, src.len()..src.len()));
    Ok(out)
}

// ---------------------------------------------------------------- parser + checker

struct Parser<'s, S: Scope> {
    toks: Vec<(Tok, Range<usize>)>,
    pos: usize,
    scope: &'s S,
    /// Nesting depth (parentheses, call arguments, `not`s): bounded, since
    /// the parser, the checker and `eval` recurse (fuzzing found a stack
    /// overflow at a few thousand open parentheses).
    depth: usize,
}

/// The deepest nesting an expression may have.
const MAX_DEPTH: usize = 64;

/// Compiles `src` in `scope`, checking names, arity, types and date formats.
pub fn compile<S: Scope>(src: &str, scope: &S) -> Result<Compiled, ExprError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        scope,
        depth: 0,
    };
    let (expr, ty, _) = p.or()?;
    let (tok, span) = p.peek();
    if *tok != Tok::End {
        return Err(err(span.clone(), "unexpected text after the expression"));
    }
    Ok(Compiled {
        expr,
        ty,
        source: src.to_string(),
    })
}

type Node = (Expr, Ty, Range<usize>);

impl<S: Scope> Parser<'_, S> {
    fn peek(&self) -> &(Tok, Range<usize>) {
        &self.toks[self.pos]
    }
    fn next(&mut self) -> (Tok, Range<usize>) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().0, Tok::Ident(s) if s == kw)
    }
    fn expect(&mut self, want: Tok, what: &str) -> Result<Range<usize>, ExprError> {
        let (tok, span) = self.next();
        if tok == want {
            Ok(span)
        } else {
            Err(err(span, format!("expected {what}")))
        }
    }

    /// `node` is of type `ty`, or an error at its span: what was needed, and
    /// what was found.
    fn want(node: &Node, ty: Ty, needed: impl FnOnce() -> String) -> Result<(), ExprError> {
        if node.1 == ty {
            return Ok(());
        }
        Err(err(
            node.2.clone(),
            format!("{}, found {}", needed(), node.1.name()),
        ))
    }

    fn want_bool(node: &Node, ctx: &str) -> Result<(), ExprError> {
        Self::want(node, Ty::Bool, || format!("{ctx} needs a condition (bool)"))
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        self.bool_chain("or", "`or`", Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        self.bool_chain("and", "`and`", Self::not, Expr::And)
    }

    /// `a or b or …` / `a and b and …`: bool operands one precedence level
    /// down, joined to the left. `ctx` names the operator in type errors.
    fn bool_chain(
        &mut self,
        keyword: &str,
        ctx: &str,
        operand: fn(&mut Self) -> Result<Node, ExprError>,
        join: fn(Box<Expr>, Box<Expr>) -> Expr,
    ) -> Result<Node, ExprError> {
        let mut left = operand(self)?;
        while self.is_keyword(keyword) {
            self.next();
            let right = operand(self)?;
            Self::want_bool(&left, ctx)?;
            Self::want_bool(&right, ctx)?;
            let span = left.2.start..right.2.end;
            left = (join(Box::new(left.0), Box::new(right.0)), Ty::Bool, span);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        self.depth += 1;
        let r = if self.depth > MAX_DEPTH {
            Err(err(
                self.peek().1.clone(),
                format!("the expression is nested more than {MAX_DEPTH} levels deep"),
            ))
        } else {
            self.not_inner()
        };
        self.depth -= 1;
        r
    }

    fn not_inner(&mut self) -> Result<Node, ExprError> {
        if self.is_keyword("not") {
            let (_, start) = self.next();
            let inner = self.not()?;
            Self::want_bool(&inner, "`not`")?;
            let span = start.start..inner.2.end;
            return Ok((Expr::Not(Box::new(inner.0)), Ty::Bool, span));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Node, ExprError> {
        let left = self.primary()?;
        match &self.peek().0 {
            Tok::EqEq | Tok::NotEq => {
                let (op, _) = self.next();
                let right = self.primary()?;
                if left.1 != right.1 {
                    return Err(err(
                        left.2.start..right.2.end,
                        format!("cannot compare {} with {}", left.1.name(), right.1.name()),
                    ));
                }
                let span = left.2.start..right.2.end;
                Ok((
                    Expr::Eq {
                        left: Box::new(left.0),
                        right: Box::new(right.0),
                        negate: op == Tok::NotEq,
                    },
                    Ty::Bool,
                    span,
                ))
            }
            Tok::Ident(k) if k == "in" => {
                self.next();
                if left.1 != Ty::Text {
                    return Err(err(left.2, "`in` compares text"));
                }
                self.expect(Tok::LBracket, "`[` to start the list")?;
                let mut list = Vec::new();
                loop {
                    match self.next() {
                        (Tok::Text(t), _) => list.push(t),
                        (_, span) => return Err(err(span, "`in` lists hold text literals")),
                    }
                    match self.next() {
                        (Tok::Comma, _) => continue,
                        (Tok::RBracket, end) => {
                            let span = left.2.start..end.end;
                            return Ok((
                                Expr::In {
                                    arg: Box::new(left.0),
                                    list,
                                },
                                Ty::Bool,
                                span,
                            ));
                        }
                        (_, span) => return Err(err(span, "expected `,` or `]`")),
                    }
                }
            }
            _ => Ok(left),
        }
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let (tok, span) = self.next();
        match tok {
            Tok::Text(t) => Ok((Expr::Text(t), Ty::Text, span)),
            Tok::Int(n) => Ok((Expr::Int(n), Ty::Int, span)),
            Tok::Column(name) => match self.scope.column(&name) {
                Some(slot) => Ok((Expr::Column { slot, name }, Ty::Text, span)),
                None => {
                    let known = self.scope.column_names();
                    let mut e = err(span, format!("unknown column `${name}`"));
                    e.hint = Some(match closest(&name, &known) {
                        Some(c) => format!("did you mean `${c}`? columns are declared in [columns]"),
                        None => format!("declared columns: {}", known.join(", ")),
                    });
                    Err(e)
                }
            },
            Tok::LParen => {
                let inner = self.or()?;
                let end = self.expect(Tok::RParen, "`)`")?;
                Ok((inner.0, inner.1, span.start..end.end))
            }
            Tok::Ident(name) if name == "true" || name == "false" => {
                Ok((Expr::Bool(name == "true"), Ty::Bool, span))
            }
            Tok::Ident(name) => {
                let Some(func) = Func::lookup(&name) else {
                    let names: Vec<String> = Func::ALL.iter().map(|(n, _)| n.to_string()).collect();
                    let mut e = err(span, format!("unknown function `{name}`"));
                    e.hint = Some(match closest(&name, &names) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("functions: {}", names.join(", ")),
                    });
                    return Err(e);
                };
                self.expect(Tok::LParen, "`(` after the function name")?;
                let mut args: Vec<Node> = Vec::new();
                if self.peek().0 != Tok::RParen {
                    loop {
                        args.push(self.or()?);
                        if self.peek().0 == Tok::Comma {
                            self.next();
                        } else {
                            break;
                        }
                    }
                }
                let end = self.expect(Tok::RParen, "`)` or `,`")?;
                self.call(func, &name, args, span.start..end.end)
            }
            Tok::End => Err(err(span, "expected a value")),
            _ => Err(err(span, "expected a value")),
        }
    }

    fn call(
        &mut self,
        func: Func,
        name: &str,
        mut args: Vec<Node>,
        span: Range<usize>,
    ) -> Result<Node, ExprError> {
        let arity = |n: usize, args: &Vec<Node>| -> Result<(), ExprError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(
                    span.clone(),
                    format!("`{name}` takes {n} argument(s), found {}", args.len()),
                ))
            }
        };
        let text_arg = |node: &Node| Self::want(node, Ty::Text, || format!("`{name}` needs text here"));
        match func {
            Func::Trim | Func::Upper | Func::Lower | Func::Digits => {
                arity(1, &args)?;
                text_arg(&args[0])?;
                let a = args.remove(0);
                Ok((Expr::Unary(func, Box::new(a.0)), Ty::Text, span))
            }
            Func::Empty | Func::Present => {
                arity(1, &args)?;
                let a = args.remove(0);
                Ok((Expr::Unary(func, Box::new(a.0)), Ty::Bool, span))
            }
            Func::Int => {
                arity(1, &args)?;
                text_arg(&args[0])?;
                let a = args.remove(0);
                Ok((Expr::Unary(func, Box::new(a.0)), Ty::Int, span))
            }
            Func::Map => {
                arity(2, &args)?;
                let map_name = match &args[0].0 {
                    Expr::Text(t) => t.clone(),
                    _ => {
                        return Err(err(
                            args[0].2.clone(),
                            "the map name must be a literal, e.g. map('status', $status)",
                        ))
                    }
                };
                let Some(map) = self.scope.value_map(&map_name) else {
                    let mut e = err(args[0].2.clone(), format!("unknown value map `{map_name}`"));
                    e.hint = Some("value maps are declared as [maps.NAME]".into());
                    return Err(e);
                };
                text_arg(&args[1])?;
                let a = args.remove(1);
                Ok((
                    Expr::Map {
                        map,
                        arg: Box::new(a.0),
                    },
                    Ty::Text,
                    span,
                ))
            }
            Func::Part => {
                arity(3, &args)?;
                text_arg(&args[0])?;
                let sep = match &args[1].0 {
                    Expr::Text(t) if !t.is_empty() => t.clone(),
                    _ => {
                        return Err(err(
                            args[1].2.clone(),
                            "the separator must be a non-empty literal, e.g. part($x, '-', 2)",
                        ))
                    }
                };
                let n = match &args[2].0 {
                    Expr::Int(n) if *n >= 1 => *n as usize,
                    _ => {
                        return Err(err(
                            args[2].2.clone(),
                            "the piece number must be a literal from 1",
                        ))
                    }
                };
                let a = args.remove(0);
                Ok((
                    Expr::Part {
                        arg: Box::new(a.0),
                        sep,
                        n,
                    },
                    Ty::Text,
                    span,
                ))
            }
            Func::Date | Func::DateTime => {
                if args.len() < 2 {
                    return Err(err(
                        span,
                        format!(
                            "`{name}` takes a value and at least one format, e.g. {name}($col, '%m/%d/%Y')"
                        ),
                    ));
                }
                text_arg(&args[0])?;
                let time = func == Func::DateTime;
                let mut formats = Vec::new();
                for fmt in &args[1..] {
                    let Expr::Text(text) = &fmt.0 else {
                        return Err(err(fmt.2.clone(), "date formats must be literals"));
                    };
                    let f = DateFormat::compile(text, time).map_err(|m| {
                        let mut e = err(fmt.2.clone(), m);
                        e.hint = Some("formats use strftime specifiers: %Y year, %m month, %d day, %H:%M:%S time, %z offset".into());
                        e
                    })?;
                    formats.push(f);
                }
                let column = match &args[0].0 {
                    Expr::Column { name, .. } => Some(name.clone()),
                    _ => None,
                };
                let a = args.remove(0);
                let ty = if time { Ty::DateTime } else { Ty::Date };
                Ok((
                    Expr::Date {
                        arg: Box::new(a.0),
                        formats,
                        time,
                        column,
                    },
                    ty,
                    span,
                ))
            }
            Func::Coalesce => {
                if args.is_empty() {
                    return Err(err(span, "`coalesce` needs at least one argument"));
                }
                let ty = args[0].1;
                for a in &args[1..] {
                    if a.1 != ty {
                        return Err(err(
                            a.2.clone(),
                            format!(
                                "`coalesce` arguments must share one type; expected {}, found {}",
                                ty.name(),
                                a.1.name()
                            ),
                        ));
                    }
                }
                Ok((Expr::Coalesce(args.into_iter().map(|a| a.0).collect()), ty, span))
            }
            Func::Concat => {
                if args.is_empty() {
                    return Err(err(span, "`concat` needs at least one argument"));
                }
                for a in &args {
                    if a.1 != Ty::Text && a.1 != Ty::Int {
                        return Err(err(a.2.clone(), "`concat` joins text and numbers"));
                    }
                }
                Ok((
                    Expr::Concat(args.into_iter().map(|a| a.0).collect()),
                    Ty::Text,
                    span,
                ))
            }
            Func::If => {
                arity(3, &args)?;
                Self::want_bool(&args[0], "`if`")?;
                if args[1].1 != args[2].1 {
                    return Err(err(
                        args[2].2.clone(),
                        format!(
                            "both branches of `if` must have one type; found {} and {}",
                            args[1].1.name(),
                            args[2].1.name()
                        ),
                    ));
                }
                let ty = args[1].1;
                let mut it = args.into_iter();
                let (c, a, b) = (
                    it.next().expect("arity checked: 3 arguments"),
                    it.next().expect("arity checked: 3 arguments"),
                    it.next().expect("arity checked: 3 arguments"),
                );
                Ok((Expr::If(Box::new(c.0), Box::new(a.0), Box::new(b.0)), ty, span))
            }
        }
    }
}

// ---------------------------------------------------------------- evaluation

/// A runtime value. Text borrows from the record or the mapping whenever it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// An empty cell or an absent optional column. Hubs mean "unknown" by an
    /// empty cell, so empty text is always `Null`, never `""`.
    Null,
    Text(Cow<'a, str>),
    Bool(bool),
    Int(i64),
    Date(NaiveDate),
    DateTime(DateTime<FixedOffset>),
}

impl Val<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }
    fn and_null_if_empty(self) -> Self {
        match self {
            Val::Text(t) if t.is_empty() => Val::Null,
            v => v,
        }
    }
    fn text(s: &str) -> Val<'_> {
        if s.is_empty() {
            Val::Null
        } else {
            Val::Text(Cow::Borrowed(s))
        }
    }
}

/// Why a record stopped while being evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The record is bad: quarantine it with this reason.
    Reject { column: Option<String>, reason: String },
    /// The record is deliberately passed over (an unmapped code under the
    /// `skip` policy).
    Skip { reason: String },
}

/// How the evaluator reaches a record's fields and the mapping's resources.
pub trait Env<'a> {
    /// The trimmed text of column `slot`, `None` when absent or empty.
    fn field(&self, slot: usize) -> Result<Option<&'a str>, Stop>;
    /// The exact date-time of a typed date cell (Excel) in column `slot`.
    /// Text formats have none; `date()` then parses the text as before.
    fn typed_date(&self, _slot: usize) -> Option<chrono::NaiveDateTime> {
        None
    }
    /// Looks `key` up in value map `map`.
    fn lookup(&self, map: usize, key: &str) -> Result<Option<&'a str>, Stop>;
    /// Turns a local date-time into an instant in the connector's zone.
    fn localize(&self, parsed: chrono::NaiveDateTime) -> Result<DateTime<FixedOffset>, String>;
}

/// Evaluates `e` against `env`.
pub fn eval<'a, E: Env<'a>>(e: &'a Expr, env: &E) -> Result<Val<'a>, Stop> {
    Ok(match e {
        Expr::Text(t) => Val::text(t),
        Expr::Int(n) => Val::Int(*n),
        Expr::Bool(b) => Val::Bool(*b),
        Expr::Column { slot, .. } => match env.field(*slot)? {
            Some(s) => Val::text(s),
            None => Val::Null,
        },
        Expr::Unary(f, arg) => {
            let v = eval(arg, env)?;
            match (f, v) {
                (Func::Empty, v) => Val::Bool(v.is_null()),
                (Func::Present, v) => Val::Bool(!v.is_null()),
                (_, Val::Null) => Val::Null,
                (Func::Trim, Val::Text(t)) => match t {
                    Cow::Borrowed(b) => Val::text(b.trim()),
                    Cow::Owned(o) => Val::Text(Cow::Owned(o.trim().to_string())),
                },
                (Func::Upper, Val::Text(t)) => {
                    if t.bytes().any(|b| b.is_ascii_lowercase()) || !t.is_ascii() {
                        Val::Text(Cow::Owned(t.to_uppercase()))
                    } else {
                        Val::Text(t)
                    }
                }
                (Func::Lower, Val::Text(t)) => {
                    if t.bytes().any(|b| b.is_ascii_uppercase()) || !t.is_ascii() {
                        Val::Text(Cow::Owned(t.to_lowercase()))
                    } else {
                        Val::Text(t)
                    }
                }
                (Func::Digits, Val::Text(t)) => {
                    if t.bytes().all(|b| b.is_ascii_digit()) {
                        Val::Text(t)
                    } else {
                        // Sized once: collecting grows the String two or three times.
                        let mut d = String::with_capacity(t.len());
                        d.extend(t.chars().filter(char::is_ascii_digit));
                        if d.is_empty() {
                            Val::Null
                        } else {
                            Val::Text(Cow::Owned(d))
                        }
                    }
                }
                (Func::Int, Val::Text(t)) => match t.trim().parse::<i64>() {
                    Ok(n) => Val::Int(n),
                    Err(_) => {
                        return Err(Stop::Reject {
                            column: column_of(arg),
                            reason: format!("not a whole number: {}", redact(&t)),
                        })
                    }
                },
                (f, v) => unreachable!("type checker admitted {f:?} on {v:?}"),
            }
        }
        Expr::Map { map, arg } => match eval(arg, env)? {
            Val::Null => Val::Null,
            Val::Text(t) => match env.lookup(*map, &t)? {
                Some(out) => Val::text(out),
                None => Val::Null,
            },
            v => unreachable!("type checker admitted map on {v:?}"),
        },
        Expr::Date {
            arg,
            formats,
            time,
            column,
        } => match typed_date(arg, env) {
            // A typed date cell needs no format: it is a date already.
            Some(t) if !*time => Val::Date(t.date()),
            // A date-only cell (no time of day) read with datetime(): the
            // day is what the sheet says, so the value stays a date rather
            // than gaining an invented midnight in the connector's zone.
            Some(t) if t.time() == chrono::NaiveTime::MIN => Val::Date(t.date()),
            Some(t) => Val::DateTime(env.localize(t).map_err(|reason| Stop::Reject {
                column: column.clone(),
                reason,
            })?),
            None => match eval(arg, env)? {
                Val::Null => Val::Null,
                Val::Text(t) => parse_date(&t, formats, *time, env).map_err(|reason| Stop::Reject {
                    column: column.clone(),
                    reason,
                })?,
                v => unreachable!("type checker admitted date on {v:?}"),
            },
        },
        Expr::Part { arg, sep, n } => match eval(arg, env)? {
            Val::Text(Cow::Borrowed(t)) => t
                .split(sep.as_str())
                .nth(n - 1)
                .map_or(Val::Null, |p| Val::text(p.trim())),
            Val::Text(Cow::Owned(t)) => t
                .split(sep.as_str())
                .nth(n - 1)
                .map_or(Val::Null, |p| Val::Text(Cow::Owned(p.trim().to_string())))
                .and_null_if_empty(),
            _ => Val::Null,
        },
        Expr::Coalesce(args) => {
            for a in args {
                let v = eval(a, env)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            Val::Null
        }
        Expr::Concat(args) => {
            let mut out = String::new();
            for a in args {
                match eval(a, env)? {
                    Val::Null => {}
                    Val::Text(t) => out.push_str(&t),
                    Val::Int(n) => out.push_str(&n.to_string()),
                    v => unreachable!("type checker admitted concat on {v:?}"),
                }
            }
            if out.is_empty() {
                Val::Null
            } else {
                Val::Text(Cow::Owned(out))
            }
        }
        Expr::If(c, a, b) => {
            if truthy(&eval(c, env)?) {
                eval(a, env)?
            } else {
                eval(b, env)?
            }
        }
        Expr::Eq { left, right, negate } => {
            let eq = eval(left, env)? == eval(right, env)?;
            Val::Bool(eq != *negate)
        }
        Expr::In { arg, list } => match eval(arg, env)? {
            Val::Text(t) => Val::Bool(list.iter().any(|l| *l == *t)),
            _ => Val::Bool(false),
        },
        Expr::And(a, b) => Val::Bool(truthy(&eval(a, env)?) && truthy(&eval(b, env)?)),
        Expr::Or(a, b) => Val::Bool(truthy(&eval(a, env)?) || truthy(&eval(b, env)?)),
        Expr::Not(a) => Val::Bool(!truthy(&eval(a, env)?)),
    })
}

/// The typed date behind `arg`, when `arg` is a column (possibly trimmed)
/// holding a typed date cell.
fn typed_date<'a, E: Env<'a>>(arg: &Expr, env: &E) -> Option<chrono::NaiveDateTime> {
    match arg {
        Expr::Column { slot, .. } => env.typed_date(*slot),
        Expr::Unary(Func::Trim, inner) => typed_date(inner, env),
        _ => None,
    }
}

/// Conditions treat an unknown (null) as false.
pub fn truthy(v: &Val<'_>) -> bool {
    matches!(v, Val::Bool(true))
}

fn column_of(e: &Expr) -> Option<String> {
    match e {
        Expr::Column { name, .. } => Some(name.clone()),
        Expr::Unary(_, inner) => column_of(inner),
        _ => None,
    }
}

fn parse_date<'a, E: Env<'a>>(
    s: &str,
    formats: &[DateFormat],
    time: bool,
    env: &E,
) -> Result<Val<'a>, String> {
    for f in formats {
        if let Some(d) = f.fast.parse(s) {
            return Ok(Val::Date(d));
        }
        if f.fast == FastDate::ExcelSerial {
            continue; // not a serial number; the next format may read it
        }
        let Some(parsed) = f.parse(s) else { continue };
        if !time {
            if let Ok(d) = parsed.to_naive_date() {
                return Ok(Val::Date(d));
            }
            continue;
        }
        if f.has_offset {
            if let Ok(t) = parsed.to_datetime() {
                return Ok(Val::DateTime(t));
            }
            continue;
        }
        let (Ok(d), Ok(t)) = (parsed.to_naive_date(), parsed.to_naive_time()) else {
            continue;
        };
        debug_assert!(f.has_time);
        return env.localize(d.and_time(t)).map(Val::DateTime);
    }
    let names: Vec<&str> = formats.iter().map(|f| f.text.as_str()).collect();
    Err(format!(
        "{} {} does not match the format(s) {}",
        if time { "date-time" } else { "date" },
        redact(s),
        names.join(", ")
    ))
}

/// Redacts a value for error messages and reject files: its **shape**,
/// never its content. Runs of digits and of letters become counts, and
/// punctuation and spaces stay, so a wrong date format is still diagnosable
/// (`<2 digits/2 digits/4 digits>` vs `<4 digits-2 digits-2 digits>`) while
/// no identifier leaks. The angle brackets and words keep a shape from being
/// mistaken for a value the file holds (`'XXX'` looked like one).
///
/// - letters: `3 letters` (all upper case), `3 lowercase letters`,
///   `5 mixed-case letters`; digits: `4 digits`;
/// - two runs that touch are joined by `+` (`PA123` is `<2 letters+3 digits>`);
/// - a tab is `\t`, other control characters `?`; an empty value is `<empty>`;
/// - past 64 characters the shape ends with `…`.
///
/// `docs/mapping.md` ("Rejects") documents the same rules for users.
pub fn redact(s: &str) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Run {
        Digits,
        Letters { upper: bool, lower: bool },
    }
    fn push_run(out: &mut String, run: Run, n: usize) {
        use std::fmt::Write;
        let plural = if n == 1 { "" } else { "s" };
        let _ = match run {
            Run::Digits => write!(out, "{n} digit{plural}"),
            Run::Letters {
                upper: false,
                lower: true,
            } => write!(out, "{n} lowercase letter{plural}"),
            Run::Letters {
                upper: true,
                lower: true,
            } => write!(out, "{n} mixed-case letter{plural}"),
            Run::Letters { .. } => write!(out, "{n} letter{plural}"),
        };
    }
    if s.is_empty() {
        return "<empty>".to_string();
    }
    let mut out = String::with_capacity(32);
    out.push('<');
    // The open run, and whether the last thing written was a run (so a run
    // right after it is joined with `+`).
    let mut open: Option<(Run, usize)> = None;
    let mut after_run = false;
    for c in s.chars().take(64) {
        let class = if c.is_ascii_digit() {
            Some(Run::Digits)
        } else if c.is_alphabetic() {
            Some(Run::Letters {
                upper: c.is_uppercase(),
                lower: c.is_lowercase(),
            })
        } else {
            None
        };
        match (class, &mut open) {
            (Some(Run::Digits), Some((Run::Digits, n))) => *n += 1,
            (Some(Run::Letters { upper, lower }), Some((Run::Letters { upper: u, lower: l }, n))) => {
                *u |= upper;
                *l |= lower;
                *n += 1;
            }
            (Some(class), _) => {
                if let Some((run, n)) = open.take() {
                    push_run(&mut out, run, n);
                    after_run = true;
                }
                if after_run {
                    out.push('+');
                }
                open = Some((class, 1));
            }
            (None, _) => {
                if let Some((run, n)) = open.take() {
                    push_run(&mut out, run, n);
                }
                after_run = false;
                match c {
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push('?'),
                    c => out.push(c),
                }
            }
        }
    }
    if let Some((run, n)) = open {
        push_run(&mut out, run, n);
    }
    if s.chars().count() > 64 {
        out.push('…');
    }
    out.push('>');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct TestScope;
    impl Scope for TestScope {
        fn column(&self, name: &str) -> Option<usize> {
            ["status", "date", "qty"].iter().position(|c| *c == name)
        }
        fn column_names(&self) -> Vec<String> {
            vec!["status".into(), "date".into(), "qty".into()]
        }
        fn value_map(&self, name: &str) -> Option<usize> {
            (name == "codes").then_some(0)
        }
    }

    struct TestEnv {
        fields: Vec<&'static str>,
        map: HashMap<&'static str, &'static str>,
    }
    impl<'a> Env<'a> for &'a TestEnv {
        fn field(&self, slot: usize) -> Result<Option<&'a str>, Stop> {
            Ok(self.fields.get(slot).map(|s| s.trim()).filter(|s| !s.is_empty()))
        }
        fn lookup(&self, _map: usize, key: &str) -> Result<Option<&'a str>, Stop> {
            match self.map.get(key) {
                Some(v) => Ok(Some(v)),
                None => Err(Stop::Skip {
                    reason: "unmapped".into(),
                }),
            }
        }
        fn localize(&self, t: chrono::NaiveDateTime) -> Result<DateTime<FixedOffset>, String> {
            Ok(t.and_utc().fixed_offset())
        }
    }

    fn env(fields: Vec<&'static str>) -> TestEnv {
        TestEnv {
            fields,
            map: HashMap::from([("APP", "pa.approved")]),
        }
    }

    fn run<'a>(src: &str, e: &'a TestEnv) -> Result<Val<'a>, Stop> {
        let c = compile(src, &TestScope).expect("compiles");
        let leaked: &'a Compiled = Box::leak(Box::new(c));
        eval(&leaked.expr, &e)
    }

    #[test]
    fn columns_maps_and_conditions() {
        let e = env(vec![" APP ", "11/22/2026", ""]);
        assert_eq!(
            run("map('codes', $status)", &e),
            Ok(Val::Text("pa.approved".into()))
        );
        assert_eq!(run("$status == 'APP' and empty($qty)", &e), Ok(Val::Bool(true)));
        assert_eq!(run("$status in ['X', 'APP']", &e), Ok(Val::Bool(true)));
        assert_eq!(run("not present($qty)", &e), Ok(Val::Bool(true)));
        assert_eq!(run("coalesce($qty, 'none')", &e), Ok(Val::Text("none".into())));
        assert_eq!(
            run("date($date, '%Y-%m-%d', '%m/%d/%Y')", &e),
            Ok(Val::Date(
                NaiveDate::from_ymd_opt(2026, 11, 22).expect("valid date")
            ))
        );
    }

    #[test]
    fn bad_date_rejects_with_column_and_redacted_value() {
        let e = env(vec!["APP", "13/45/20X6", ""]);
        match run("date($date, '%m/%d/%Y')", &e) {
            Err(Stop::Reject { column, reason }) => {
                assert_eq!(column.as_deref(), Some("date"));
                assert!(
                    reason.contains("date <2 digits/2 digits/2 digits+1 letter+1 digit> does not match"),
                    "{reason}"
                );
            }
            other => panic!("expected reject, got {other:?}"),
        }
    }

    #[test]
    fn compile_errors_point_at_the_span() {
        let e = compile("date($stauts, '%m/%d/%Y')", &TestScope).expect_err("unknown column");
        assert_eq!(e.span, 5..12);
        assert!(e.hint.as_deref().unwrap_or("").contains("$status"));
        let e = compile("date($date, '%m/%q/%Y')", &TestScope).expect_err("bad format");
        assert_eq!(e.span, 12..22);
        let e = compile("date($date, '%m/%Y')", &TestScope).expect_err("no day");
        assert!(e.message.contains("full date"));
        let e = compile("$status = 'x'", &TestScope).expect_err("single =");
        assert_eq!(e.span, 8..9);
        let e = compile("map('nope', $status)", &TestScope).expect_err("unknown map");
        assert_eq!(e.span, 4..10);
        let e = compile("if($status, 'a', 'b')", &TestScope).expect_err("non-bool cond");
        assert!(e.message.contains("condition"));
        let e = compile("uper($status)", &TestScope).expect_err("unknown fn");
        assert!(e.hint.as_deref().unwrap_or("").contains("upper"));
    }

    #[test]
    fn fast_date_paths_agree_with_chrono() {
        for fmt in ["%m/%d/%Y", "%Y-%m-%d"] {
            let f = DateFormat::compile(fmt, false).expect("valid");
            assert_ne!(f.fast, FastDate::None);
            for s in [
                "11/22/2026",
                "1/2/2026",
                "02/30/2026",
                "13/01/2026",
                "11/22/26",
                "11/22/2026x",
                "2026-11-22",
                "2026-2-3",
                "2026-02-30",
                "2026-11-22 ",
                "",
                "//",
                "--",
                "11//2026",
                "+1/2/2026",
            ] {
                let chrono = f.parse(s).and_then(|p| p.to_naive_date().ok());
                if let Some(fast) = f.fast.parse(s) {
                    assert_eq!(Some(fast), chrono, "{fmt} on {s:?}");
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Found by tests/fuzz.rs (expression target): thousands of open
        // parentheses overflowed the parser's stack.
        for src in [
            format!("{}$status{}", "(".repeat(10_000), ")".repeat(10_000)),
            format!("{}present($status)", "not ".repeat(10_000)),
            format!("{}$status{}", "coalesce(".repeat(10_000), ")".repeat(10_000)),
            "(".repeat(100_000),
        ] {
            let e = compile(&src, &TestScope).expect_err("too deep");
            assert!(e.message.contains("nested more than 64 levels"), "{}", e.message);
        }
        let ok = format!("{}$status{}", "(".repeat(60), ")".repeat(60));
        assert!(compile(&ok, &TestScope).is_ok());
    }

    #[test]
    fn redact_keeps_shape_only() {
        for (value, shape) in [
            ("Smith, J 1234", "<5 mixed-case letters, 1 letter 4 digits>"),
            ("PAS", "<3 letters>"),
            ("pas", "<3 lowercase letters>"),
            ("11/17/2026", "<2 digits/2 digits/4 digits>"),
            (
                "2026-11-17T10:00",
                "<4 digits-2 digits-2 digits+1 letter+2 digits:2 digits>",
            ),
            ("PA1", "<2 letters+1 digit>"),
            ("a\tb", "<1 lowercase letter\\t1 lowercase letter>"),
            ("", "<empty>"),
        ] {
            assert_eq!(redact(value), shape, "{value:?}");
        }
        let long = redact(&"9".repeat(100));
        assert_eq!(long, "<64 digits…>");
        // Nothing of the value itself survives: no letter or digit but the counts.
        let r = redact("Jane Q. Public 555-0100");
        assert!(!r.contains("Jane") && !r.contains("555"), "{r}");
    }
}
