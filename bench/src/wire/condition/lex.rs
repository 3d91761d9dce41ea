//! A condition's text as tokens.

use super::{Invalid, Op};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Word(String),
    Alias(String),
    Placeholder(String),
    Number(usize),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Dot,
    Comma,
    Op(Op),
}

pub(super) fn tokens(text: &str) -> Result<Vec<Token>, Invalid> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |start: usize| {
        let mut end = start;
        while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
            end += 1;
        }
        (chars[start..end].iter().collect::<String>(), end)
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let double = match two.as_str() {
            "<>" => Some(Op::Ne),
            "<=" => Some(Op::Le),
            ">=" => Some(Op::Ge),
            _ => None,
        };
        if let Some(op) = double {
            out.push(Token::Op(op));
            i += 2;
            continue;
        }
        let single = match c {
            '(' => Some(Token::Open),
            ')' => Some(Token::Close),
            '[' => Some(Token::OpenBracket),
            ']' => Some(Token::CloseBracket),
            '.' => Some(Token::Dot),
            ',' => Some(Token::Comma),
            '=' => Some(Token::Op(Op::Eq)),
            '<' => Some(Token::Op(Op::Lt)),
            '>' => Some(Token::Op(Op::Gt)),
            _ => None,
        };
        if let Some(token) = single {
            out.push(token);
            i += 1;
            continue;
        }
        if c == '#' || c == ':' {
            let (name, end) = word(i + 1);
            if name.is_empty() {
                return Err(Invalid(format!("a bare {c:?} at character {i}")));
            }
            out.push(if c == '#' {
                Token::Alias(format!("#{name}"))
            } else {
                Token::Placeholder(format!(":{name}"))
            });
            i = end;
        } else if c.is_ascii_digit() {
            let (digits, end) = word(i);
            let n = digits
                .parse()
                .map_err(|_| Invalid(format!("{digits:?} is not a list index")))?;
            out.push(Token::Number(n));
            i = end;
        } else if c.is_alphabetic() || c == '_' {
            let (name, end) = word(i);
            out.push(Token::Word(name));
            i = end;
        } else {
            return Err(Invalid(format!("unexpected {c:?} at character {i}")));
        }
    }
    Ok(out)
}
