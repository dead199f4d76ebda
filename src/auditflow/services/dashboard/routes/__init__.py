"""The dashboard's routers: sign-in, pages, alert triage and the live event stream."""
