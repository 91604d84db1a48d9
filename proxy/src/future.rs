//! Small futures for the request path that keep its state machine small: hyper moves the
//! request's future once per request and spawns it per HTTP/2 stream, so every byte of it is
//! copied several times. An `async fn` holds its arguments apart from what it awaits (a
//! future passed in is stored twice); [`Within`] holds its future once, in place.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::error::Elapsed;
use tokio::time::{Instant, Timeout};

pin_project! {
    /// A future, or `Err(Elapsed)` once its deadline (if any) has passed; see [`within`].
    #[project = WithinProjection]
    pub enum Within<F> {
        /// With a deadline.
        Limited { #[pin] future: Timeout<F> },
        /// Without one: no timer is armed.
        Unlimited { #[pin] future: F },
    }
}

/// `future`, or `Err` once `deadline` (if any) has passed.
pub fn within<F: Future>(deadline: Option<Instant>, future: F) -> Within<F> {
    match deadline {
        Some(deadline) => Within::Limited {
            future: tokio::time::timeout_at(deadline, future),
        },
        None => Within::Unlimited { future },
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            WithinProjection::Limited { future } => future.poll(cx),
            WithinProjection::Unlimited { future } => future.poll(cx).map(Ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn within_passes_the_output_through_or_times_out() {
        assert_eq!(within(None, async { 7 }).await.ok(), Some(7));
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(within(Some(soon), async { 8 }).await.ok(), Some(8));
        let never = std::future::pending::<()>();
        assert!(within(Some(soon), never).await.is_err());
    }

    #[test]
    fn within_is_no_larger_than_a_timeout() {
        let future = std::future::pending::<[u8; 256]>();
        assert!(
            std::mem::size_of_val(&within(None, future))
                <= std::mem::size_of::<Timeout<std::future::Pending<[u8; 256]>>>() + 8
        );
    }
}
