arm: disposition oops -> livelock [no_context | generic:account_minor]
