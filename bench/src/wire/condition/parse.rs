//! Tokens to a [`Condition`], with the request's aliases and placeholders resolved.

use serde_json::Value;

use super::lex::{tokens, Token};
use super::{Bindings, Condition, Invalid, Operand, Path, Step};

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    bindings: &'a Bindings<'a>,
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expect(&mut self, token: Token) -> Result<(), Invalid> {
        match self.next() {
            Some(t) if t == token => Ok(()),
            other => Err(Invalid(format!("expected {token:?}, found {other:?}"))),
        }
    }

    fn or(&mut self) -> Result<Condition, Invalid> {
        let mut left = self.and()?;
        while keyword(self.peek(), "OR") {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, Invalid> {
        let mut left = self.not()?;
        while keyword(self.peek(), "AND") {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, Invalid> {
        if keyword(self.peek(), "NOT") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Condition, Invalid> {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::Close)?;
            return Ok(inner);
        }
        if let (Some(Token::Word(name)), Some(Token::Open)) =
            (self.peek().cloned(), self.tokens.get(self.at + 1))
        {
            let exists = match name.as_str() {
                "attribute_exists" => true,
                "attribute_not_exists" => false,
                other => {
                    return Err(Invalid(format!(
                        "function {other:?}: the model knows attribute_exists and attribute_not_exists only"
                    )))
                }
            };
            self.at += 2;
            let path = self.path()?;
            self.expect(Token::Close)?;
            return Ok(if exists {
                Condition::Exists(path)
            } else {
                Condition::NotExists(path)
            });
        }
        let left = self.operand()?;
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            other => {
                return Err(Invalid(format!(
                    "expected a comparison (= <> < <= > >=), found {other:?}; BETWEEN, IN and other functions are not in the model"
                )))
            }
        };
        Ok(Condition::Compare(left, op, self.operand()?))
    }

    fn operand(&mut self) -> Result<Operand, Invalid> {
        if let Some(Token::Placeholder(name)) = self.peek().cloned() {
            self.at += 1;
            let value = self
                .bindings
                .values
                .and_then(|v| v.get(&name))
                .ok_or_else(|| {
                    Invalid(format!(
                        "An expression attribute value used in expression is not defined; attribute value: {name}"
                    ))
                })?;
            return Ok(Operand::Value(value.clone()));
        }
        Ok(Operand::Path(self.path()?))
    }

    fn name(&mut self) -> Result<String, Invalid> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            Some(Token::Alias(alias)) => self
                .bindings
                .names
                .and_then(|n| n.get(&alias))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    Invalid(format!(
                        "An expression attribute name used in the document path is not defined; attribute name: {alias}"
                    ))
                }),
            other => Err(Invalid(format!("expected an attribute name, found {other:?}"))),
        }
    }

    fn path(&mut self) -> Result<Path, Invalid> {
        let mut path = vec![Step::Name(self.name()?)];
        loop {
            match self.peek() {
                Some(Token::Dot) => {
                    self.at += 1;
                    path.push(Step::Name(self.name()?));
                }
                Some(Token::OpenBracket) => {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Number(n)) => path.push(Step::Index(n)),
                        other => {
                            return Err(Invalid(format!("expected an index, found {other:?}")))
                        }
                    }
                    self.expect(Token::CloseBracket)?;
                }
                _ => return Ok(path),
            }
        }
    }
}

/// Parses `text` with the request's `bindings`; every alias and placeholder must be bound.
pub fn parse(text: &str, bindings: &Bindings<'_>) -> Result<Condition, Invalid> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
        bindings,
    };
    let condition = parser.or()?;
    match parser.peek() {
        None => Ok(condition),
        Some(extra) => Err(Invalid(format!(
            "unexpected {extra:?} after a complete condition"
        ))),
    }
}
