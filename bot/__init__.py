"""Platform adapters. Each turns platform events into `commands.frame.types.Request`s and renders the
`Reply`s it gets back; none touches storage or torch."""
