//! What a stream processor's service returns: the records to emit.

use crate::context::{Propagation, RecordContext};
use crate::layers::dead_letter::Outcome;
use crate::record::{HeaderName, Record};

/// A service response that names the records to emit for one input.
///
/// `Vec<Record>`, `Option<Record>`, `Record` and `()` (nothing) emit what they
/// hold; [`Outcome`] (the dead-letter layer's response) emits the handler's
/// records, or nothing when the input went to the dead-letter topic.
///
/// ```
/// use light_kafka::layers::dead_letter::{DeadLettered, Outcome};
/// use light_kafka::record::Record;
/// use light_kafka::streams::outputs::IntoOutputs;
///
/// let one = Record::builder("out").build();
/// assert_eq!(Some(one.clone()).into_outputs().len(), 1);
/// assert_eq!(Outcome::Handled(vec![one.clone(), one]).into_outputs().len(), 2);
/// assert!(().into_outputs().is_empty());
/// ```
pub trait IntoOutputs {
    /// The records to emit.
    fn into_outputs(self) -> Vec<Record>;
}

impl IntoOutputs for Vec<Record> {
    fn into_outputs(self) -> Vec<Record> {
        self
    }
}

impl IntoOutputs for Record {
    fn into_outputs(self) -> Vec<Record> {
        vec![self]
    }
}

impl IntoOutputs for Option<Record> {
    fn into_outputs(self) -> Vec<Record> {
        self.into_iter().collect()
    }
}

impl IntoOutputs for () {
    fn into_outputs(self) -> Vec<Record> {
        Vec::new()
    }
}

impl<R: IntoOutputs> IntoOutputs for Outcome<R> {
    fn into_outputs(self) -> Vec<Record> {
        match self {
            Outcome::Handled(response) => response.into_outputs(),
            Outcome::DeadLettered(_) => Vec::new(),
        }
    }
}

/// The context an input passes on to its outputs: its propagated headers
/// (correlation and traceability ids, token, W3C trace context), with the ids
/// a layer generated for it (kept in its [`RecordContext`]) when it had none.
pub(crate) fn inherited(mut propagation: Propagation, context: &RecordContext) -> Propagation {
    {
        let fields = context.fields();
        if propagation.correlation_id().is_none()
            && let Some(id) = fields.correlation_id
        {
            propagation.set_correlation_id(id.to_string());
        }
        if propagation.traceability_id().is_none()
            && let Some(id) = fields.traceability_id
        {
            propagation.set_traceability_id(id.to_string());
        }
    }
    propagation
}

/// Gives `output` each propagated header of `from` it does not set itself.
pub(crate) fn stamp(output: &mut Record, from: &Propagation) {
    let headers = output.headers_mut();
    for (name, value) in from.iter() {
        if !headers.contains(name) {
            headers.append(HeaderName::from_static(name), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::names;

    #[test]
    fn outputs_inherit_what_they_do_not_set() {
        let mut input = Record::builder("in")
            .header(
                names::TRACEPARENT,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .build();
        let context = RecordContext::of(&mut input);
        context.update(|f| f.correlation_id = Some("generated".into()));
        let from = inherited(Propagation::from_headers(input.headers()), &context);
        let mut output = Record::builder("out")
            .header(names::CORRELATION_ID, "own")
            .build();
        stamp(&mut output, &from);
        assert_eq!(output.header_str(names::CORRELATION_ID), Some("own"));
        assert!(
            output
                .header_str(names::TRACEPARENT)
                .unwrap()
                .starts_with("00-0af7")
        );
        let mut bare = Record::builder("out").build();
        stamp(&mut bare, &from);
        assert_eq!(bare.header_str(names::CORRELATION_ID), Some("generated"));
    }
}
