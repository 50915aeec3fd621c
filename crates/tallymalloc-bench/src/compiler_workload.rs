//! A compiler-like workload: generate a large source text, tokenize it into owned strings,
//! parse it into boxed expression trees, fold constants, pretty-print it again, and count
//! symbols in a `HashMap`. Built into two binaries: `compiler` (the system allocator, so
//! `LD_PRELOAD` can swap it like the C workloads) and `compiler-tallymalloc` (tallymalloc as
//! `#[global_allocator]`, inlined).

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Identifier(String),
    Number(i64),
    Symbol(char),
}

enum Expression {
    Number(i64),
    Variable(String),
    Binary(char, Box<Expression>, Box<Expression>),
    Call(String, Vec<Expression>),
}

struct Function {
    name: String,
    parameters: Vec<String>,
    body: Expression,
}

fn generate(seed: u64, functions: usize) -> String {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::new();
    for f in 0..functions {
        let arity = 1 + next() % 4;
        let parameters: Vec<String> = (0..arity).map(|p| format!("arg{p}")).collect();
        text.push_str(&format!("fn function{f}({}) = ", parameters.join(", ")));
        let mut depth = 0;
        for term in 0..(4 + next() % 12) {
            if term > 0 {
                text.push_str([" + ", " - ", " * "][(next() % 3) as usize]);
            }
            match next() % 4 {
                0 => text.push_str(&(next() % 1000).to_string()),
                1 => text.push_str(&parameters[(next() % arity) as usize]),
                2 if f > 0 => {
                    text.push_str(&format!("function{}(", next() % f as u64));
                    text.push_str(&parameters[0]);
                    text.push(')');
                }
                _ => {
                    text.push('(');
                    depth += 1;
                    text.push_str(&(next() % 50).to_string());
                }
            }
        }
        text.push_str(&")".repeat(depth));
        text.push_str(";\n");
    }
    text
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphabetic() {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphanumeric()) {
                word.push(c);
                chars.next();
            }
            tokens.push(Token::Identifier(word));
        } else if c.is_ascii_digit() {
            let mut value = 0i64;
            while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
                value = value * 10 + digit as i64;
                chars.next();
            }
            tokens.push(Token::Number(value));
        } else {
            tokens.push(Token::Symbol(c));
            chars.next();
        }
    }
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }
    fn take(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }
    fn expect(&mut self, symbol: char) {
        let token = self.take();
        assert_eq!(token, Some(Token::Symbol(symbol)), "expected {symbol}");
    }
    fn function(&mut self) -> Function {
        assert_eq!(self.take(), Some(Token::Identifier("fn".into())));
        let Some(Token::Identifier(name)) = self.take() else {
            panic!("name")
        };
        self.expect('(');
        let mut parameters = Vec::new();
        while let Some(Token::Identifier(parameter)) = self.take() {
            parameters.push(parameter);
            if self.peek() == Some(&Token::Symbol(',')) {
                self.position += 1;
            }
        }
        self.expect('=');
        let body = self.expression();
        self.expect(';');
        Function {
            name,
            parameters,
            body,
        }
    }
    fn expression(&mut self) -> Expression {
        let mut left = self.term();
        while let Some(Token::Symbol(op @ ('+' | '-' | '*'))) = self.peek().cloned() {
            self.position += 1;
            let right = self.term();
            left = Expression::Binary(op, Box::new(left), Box::new(right));
        }
        left
    }
    fn term(&mut self) -> Expression {
        match self.take() {
            Some(Token::Number(value)) => Expression::Number(value),
            Some(Token::Symbol('(')) => {
                let inner = self.expression();
                self.expect(')');
                inner
            }
            Some(Token::Identifier(name)) if self.peek() == Some(&Token::Symbol('(')) => {
                self.position += 1;
                let argument = self.expression();
                self.expect(')');
                Expression::Call(name, vec![argument])
            }
            Some(Token::Identifier(name)) => Expression::Variable(name),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn fold(expression: Expression) -> Expression {
    match expression {
        Expression::Binary(op, left, right) => match (fold(*left), fold(*right)) {
            (Expression::Number(a), Expression::Number(b)) => Expression::Number(match op {
                '+' => a.wrapping_add(b),
                '-' => a.wrapping_sub(b),
                _ => a.wrapping_mul(b),
            }),
            (left, right) => Expression::Binary(op, Box::new(left), Box::new(right)),
        },
        Expression::Call(name, arguments) => {
            Expression::Call(name, arguments.into_iter().map(fold).collect())
        }
        other => other,
    }
}

fn print(expression: &Expression, out: &mut String, uses: &mut HashMap<String, usize>) {
    match expression {
        Expression::Number(value) => out.push_str(&value.to_string()),
        Expression::Variable(name) => {
            *uses.entry(name.clone()).or_default() += 1;
            out.push_str(name);
        }
        Expression::Binary(op, left, right) => {
            out.push('(');
            print(left, out, uses);
            out.push_str(&format!(" {op} "));
            print(right, out, uses);
            out.push(')');
        }
        Expression::Call(name, arguments) => {
            *uses.entry(name.clone()).or_default() += 1;
            out.push_str(name);
            out.push('(');
            for argument in arguments {
                print(argument, out, uses);
            }
            out.push(')');
        }
    }
}

/// Runs the workload `scale` times; returns a checksum of the output.
pub fn run(scale: u64) -> u64 {
    let mut checksum = 0u64;
    for round in 0..scale {
        let source = generate(round + 1, 3000);
        let mut parser = Parser {
            tokens: tokenize(&source),
            position: 0,
        };
        let mut functions = Vec::new();
        while parser.peek().is_some() {
            functions.push(parser.function());
        }
        let mut output = String::new();
        let mut uses: HashMap<String, usize> = HashMap::new();
        for function in functions {
            let body = fold(function.body);
            output.push_str(&format!(
                "{}({}) = ",
                function.name,
                function.parameters.join(",")
            ));
            print(&body, &mut output, &mut uses);
            output.push('\n');
        }
        checksum = checksum.wrapping_add(output.len() as u64 + uses.len() as u64);
        checksum = checksum.wrapping_add(*uses.get("arg0").unwrap_or(&0) as u64);
    }
    checksum
}

pub fn main_with_arguments() {
    let scale = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    println!("compiler {}", run(scale));
}
