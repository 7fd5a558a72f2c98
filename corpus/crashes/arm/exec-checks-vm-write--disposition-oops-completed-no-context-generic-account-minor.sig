arm: disposition oops -> completed [no_context | generic:account_minor]
