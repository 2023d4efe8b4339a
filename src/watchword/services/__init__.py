"""Use cases: the domain's rules applied over the store ports and the bus."""
