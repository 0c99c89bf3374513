//! Test support: start the real server on port 0, and a y-websocket client built on yrs.
