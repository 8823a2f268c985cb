"""Flow control: when a request may start. Small limiters, each entered with
`async with`, composed in one throttle, and the learner that tunes them."""
