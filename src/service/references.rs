//! Secret references (issue 23): a value may hold `${KEY}` (the same
//! environment), `${env.KEY}` (another environment of the same project) or
//! `${project.env.KEY}` (any environment of the same organization). They
//! are resolved at inject (so `coffer run`) and by a reveal with
//! `resolve=true`; the stored value, its history and every other read keep
//! the reference as written. `$${` is a literal `${`; a `${…}` that is not a
//! reference (another character than letters, digits, `_`, `-`, or more than
//! three parts) is left as it is.
//!
//! Every referenced environment other than the one the caller asked for
//! needs *reveal* there (a reference may not read what the caller cannot);
//! a reference chain deeper than [`MAX_DEPTH`], a cycle and a missing
//! secret are refused with the path named. Errors name keys and
//! environments, never a value.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;

use zeroize::Zeroizing;

use super::{Result, SecretService, ServiceError, Unsealed};
use crate::access::Permission;

/// The longest chain of references followed from one value.
pub(super) const MAX_DEPTH: usize = 5;

/// One secret, by slugs within the organization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    project: String,
    env: String,
    key: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.env, self.key)
    }
}

/// A piece of a value.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// text as it is
    Text(&'a str),
    /// a reference: its one to three dot-separated parts
    Ref(&'a str, Vec<&'a str>),
}

/// Split a value into text and references.
fn parse(value: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            // escaped: a literal "${"
            out.push(Piece::Text(&rest[..i]));
            out.push(Piece::Text("${"));
            rest = tail;
            continue;
        }
        if let Some(body) = after.strip_prefix("${")
            && let Some(end) = body.find('}')
        {
            let inner = &body[..end];
            let parts: Vec<&str> = inner.split('.').collect();
            let ok = (1..=3).contains(&parts.len())
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
                && super::secrets::check_key(parts[parts.len() - 1]).is_ok();
            if ok {
                out.push(Piece::Text(&rest[..i]));
                out.push(Piece::Ref(&after[..end + 3], parts));
                rest = &body[end + 1..];
                continue;
            }
        }
        // a lone '$': keep it and go on after it
        out.push(Piece::Text(&rest[..=i]));
        rest = &rest[i + 1..];
    }
    out.push(Piece::Text(rest));
    out.retain(|p| *p != Piece::Text(""));
    out
}

/// Whether a value holds anything to resolve.
pub(super) fn has_reference(value: &str) -> bool {
    value.contains("${") && parse(value).iter().any(|p| matches!(p, Piece::Ref(..))) || value.contains("$${")
}

/// Resolves the references of values of one organization for one caller,
/// decrypting each referenced environment once.
pub(super) struct Resolver<'a> {
    svc: &'a SecretService,
    who: &'a Unsealed,
    org: &'a str,
    /// (project, env) → its live values
    envs: HashMap<(String, String), BTreeMap<String, Zeroizing<String>>>,
}

type Resolving<'s> = Pin<Box<dyn Future<Output = Result<Zeroizing<String>>> + Send + 's>>;

impl<'a> Resolver<'a> {
    /// A resolver for `org`; `base` (project, env, values) is the
    /// environment the caller was authorized for already.
    pub(super) fn new(
        svc: &'a SecretService,
        who: &'a Unsealed,
        org: &'a str,
        base: (&str, &str, BTreeMap<String, Zeroizing<String>>),
    ) -> Resolver<'a> {
        let mut envs = HashMap::new();
        envs.insert((base.0.to_owned(), base.1.to_owned()), base.2);
        Resolver { svc, who, org, envs }
    }

    /// The values of `project/env`, after checking *reveal* there.
    async fn load(&mut self, project: &str, env: &str) -> Result<()> {
        let k = (project.to_owned(), env.to_owned());
        if self.envs.contains_key(&k) {
            return Ok(());
        }
        let (path, access) = self.svc.access.env_access(self.who, (self.org, project, env)).await?;
        access.require(&path, Permission::Reveal)?;
        let values = self.svc.plaintexts(self.who.keyring(), &path).await?;
        self.envs.insert(k, values);
        Ok(())
    }

    /// The resolved value of `key` in the base environment `(project, env)`.
    pub(super) async fn resolve_key(&mut self, project: &str, env: &str, key: &str) -> Result<Zeroizing<String>> {
        let node = Node {
            project: project.to_owned(),
            env: env.to_owned(),
            key: key.to_owned(),
        };
        let value = self.value_of(&node).await?;
        let mut stack = vec![node];
        self.resolve(value, &mut stack).await
    }

    async fn value_of(&mut self, node: &Node) -> Result<Zeroizing<String>> {
        self.load(&node.project, &node.env).await?;
        self.envs
            .get(&(node.project.clone(), node.env.clone()))
            .and_then(|m| m.get(&node.key))
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("secret {}/{node}", self.org)))
    }

    /// `value` (of the last node of `stack`) with its references replaced.
    fn resolve<'s>(&'s mut self, value: Zeroizing<String>, stack: &'s mut Vec<Node>) -> Resolving<'s> {
        Box::pin(async move {
            if !has_reference(&value) {
                return Ok(value);
            }
            let at = stack
                .last()
                .cloned()
                .ok_or_else(|| ServiceError::Internal("empty reference stack".into()))?;
            let mut out = Zeroizing::new(String::with_capacity(value.len()));
            for piece in parse(&value) {
                let (written, parts) = match piece {
                    Piece::Text(t) => {
                        out.push_str(t);
                        continue;
                    }
                    Piece::Ref(written, parts) => (written, parts),
                };
                let target = match parts.as_slice() {
                    [key] => Node {
                        key: (*key).to_owned(),
                        ..at.clone()
                    },
                    [env, key] => Node {
                        project: at.project.clone(),
                        env: (*env).to_owned(),
                        key: (*key).to_owned(),
                    },
                    [project, env, key] => Node {
                        project: (*project).to_owned(),
                        env: (*env).to_owned(),
                        key: (*key).to_owned(),
                    },
                    _ => continue,
                };
                let chain = |last: &Node| {
                    stack
                        .iter()
                        .map(ToString::to_string)
                        .chain([last.to_string()])
                        .collect::<Vec<_>>()
                        .join(" -> ")
                };
                if stack.contains(&target) {
                    return Err(ServiceError::Invalid(format!(
                        "reference cycle in {}: {}",
                        self.org,
                        chain(&target)
                    )));
                }
                if stack.len() > MAX_DEPTH {
                    return Err(ServiceError::Invalid(format!(
                        "references nested deeper than {MAX_DEPTH} in {}: {}",
                        self.org,
                        chain(&target)
                    )));
                }
                let next = match self.value_of(&target).await {
                    Ok(v) => v,
                    Err(ServiceError::NotFound(_)) => {
                        return Err(ServiceError::Invalid(format!(
                            "reference {written} in {}/{at} names {}/{target}, which does not exist",
                            self.org, self.org
                        )));
                    }
                    Err(e) => return Err(e),
                };
                stack.push(target);
                let resolved = self.resolve(next, stack).await;
                stack.pop();
                out.push_str(&resolved?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Piece, parse};

    #[test]
    fn references_are_parsed_and_the_rest_is_text() {
        assert_eq!(
            parse("a${KEY}b${env.K_2}c${p-1.dev.X}"),
            [
                Piece::Text("a"),
                Piece::Ref("${KEY}", vec!["KEY"]),
                Piece::Text("b"),
                Piece::Ref("${env.K_2}", vec!["env", "K_2"]),
                Piece::Text("c"),
                Piece::Ref("${p-1.dev.X}", vec!["p-1", "dev", "X"]),
            ]
        );
        // Not references: kept as written.
        for text in [
            "${}",
            "${a b}",
            "${a.b.c.D}",
            "${1KEY}",
            "$HOME",
            "${unterminated",
            "cost: 5$",
        ] {
            let pieces = parse(text);
            assert!(pieces.iter().all(|p| matches!(p, Piece::Text(_))), "{text}: {pieces:?}");
            let joined: String = pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => *t,
                    Piece::Ref(..) => "",
                })
                .collect();
            assert_eq!(joined, text);
        }
        assert_eq!(parse("$${KEY}"), [Piece::Text("${"), Piece::Text("KEY}")]);
    }
}
