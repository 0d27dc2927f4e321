"""`mflow serve`: the REST API over the state database and the web page that uses it."""
