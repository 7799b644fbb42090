//! Walking untrusted JSON with the path of every value at hand, so a wrong
//! shape is reported where it is (`detail.findings[1].Resources[0].Id`)
//! instead of as a bare "invalid type".

use serde_json::{Map, Value};

use super::{AlertError, AlertSource};

#[derive(Debug, Clone)]
pub(super) struct Node<'a> {
    value: &'a Value,
    path: String,
    adapter: AlertSource,
}

impl<'a> Node<'a> {
    pub fn root(adapter: AlertSource, value: &'a Value) -> Self {
        Self {
            value,
            path: String::new(),
            adapter,
        }
    }

    pub fn adapter(&self) -> AlertSource {
        self.adapter
    }

    /// Where this value is, for messages.
    pub fn path(&self) -> String {
        if self.path.is_empty() {
            "the top level".to_owned()
        } else {
            self.path.clone()
        }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn wrong_shape(&self, problem: impl Into<String>) -> AlertError {
        AlertError::WrongShape {
            adapter: self.adapter,
            path: self.path(),
            problem: problem.into(),
        }
    }

    fn expected(&self, what: &str) -> AlertError {
        self.wrong_shape(format!("expected {what}, found {}", kind(self.value)))
    }

    pub fn object(&self) -> Result<&'a Map<String, Value>, AlertError> {
        self.value
            .as_object()
            .ok_or_else(|| self.expected("an object"))
    }

    /// The member `key` of this object; `None` when it is absent or null
    /// (senders write `null` for "none" as often as they leave it out).
    pub fn get(&self, key: &str) -> Result<Option<Node<'a>>, AlertError> {
        Ok(self
            .object()?
            .get(key)
            .filter(|v| !v.is_null())
            .map(|value| Node {
                value,
                path: self.child(key),
                adapter: self.adapter,
            }))
    }

    /// The member `key`, which must be there.
    pub fn req(&self, key: &str) -> Result<Node<'a>, AlertError> {
        self.get(key)?.ok_or_else(|| AlertError::WrongShape {
            adapter: self.adapter,
            path: self.child(key),
            problem: "missing".into(),
        })
    }

    /// The member `first`, or failing that `second`; one must be there.
    pub fn req_either(&self, first: &str, second: &str) -> Result<Node<'a>, AlertError> {
        match self.get(first)? {
            Some(node) => Ok(node),
            None => self.get(second)?.ok_or_else(|| AlertError::WrongShape {
                adapter: self.adapter,
                path: self.child(first),
                problem: format!("missing, and so is {second}"),
            }),
        }
    }

    /// Follows `keys` through nested objects; `None` as soon as one is absent.
    pub fn at(&self, keys: &[&str]) -> Result<Option<Node<'a>>, AlertError> {
        let mut node = self.clone();
        for key in keys {
            match node.get(key)? {
                Some(next) => node = next,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    pub fn as_str(&self) -> Result<&'a str, AlertError> {
        self.value.as_str().ok_or_else(|| self.expected("a string"))
    }

    /// The string member `key`, if present and not empty.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, AlertError> {
        match self.get(key)? {
            Some(node) => Ok(Some(node.as_str()?).filter(|s| !s.is_empty())),
            None => Ok(None),
        }
    }

    /// The string member `key`, which must be there.
    pub fn req_str(&self, key: &str) -> Result<&'a str, AlertError> {
        self.req(key)?.as_str()
    }

    pub fn as_f64(&self) -> Result<f64, AlertError> {
        match self.value {
            Value::Number(n) => n.as_f64().ok_or_else(|| self.expected("a number")),
            _ => Err(self.expected("a number")),
        }
    }

    pub fn is_string(&self) -> bool {
        self.value.is_string()
    }

    /// The elements of this array, each with its index in its path.
    pub fn items(&self) -> Result<Vec<Node<'a>>, AlertError> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| self.expected("an array"))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", self.path),
                adapter: self.adapter,
            })
            .collect())
    }

    /// The number of elements, if this is an array.
    pub fn len(&self) -> Option<usize> {
        self.value.as_array().map(Vec::len)
    }

    /// The members of this object, each with its key in its path.
    pub fn members(&self) -> Result<Vec<(&'a str, Node<'a>)>, AlertError> {
        Ok(self
            .object()?
            .iter()
            .map(|(k, value)| {
                let node = Node {
                    value,
                    path: self.child(k),
                    adapter: self.adapter,
                };
                (k.as_str(), node)
            })
            .collect())
    }

    /// Refuses members not in `allowed`, naming the first one found, so a
    /// misspelt field is caught instead of quietly ignored.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<(), AlertError> {
        if let Some(key) = self
            .object()?
            .keys()
            .find(|k| !allowed.contains(&k.as_str()))
        {
            return Err(AlertError::WrongShape {
                adapter: self.adapter,
                path: self.child(&super::clip(key)),
                problem: format!("unknown field; expected one of: {}", allowed.join(", ")),
            });
        }
        Ok(())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
