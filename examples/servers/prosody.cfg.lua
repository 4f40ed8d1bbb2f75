-- A complete Prosody for trying stanzahook on one machine: loopback only, no TLS, no federation.
-- It serves client accounts at `localhost` and hands the domain `bot.localhost` to stanzahook.
--
-- Start it from an empty directory of your own; its data, pid file and log go there:
--
--     mkdir -p ~/xmpp-try && cd ~/xmpp-try
--     prosodyctl --config /path/to/examples/servers/prosody.cfg.lua register alice localhost alicepw
--     prosody --config /path/to/examples/servers/prosody.cfg.lua -F      # -F: stay in the foreground
--
-- then, in another terminal, stanzahook and a webhook (see the README's quick start):
--
--     python3 examples/webhooks/echo.py 8080
--     stanzahook run --domain bot.localhost --server 127.0.0.1:5347 \
--         --secret "change me: a long random secret" --post-url http://127.0.0.1:8080/
--
-- and log in with any XMPP client as alice@localhost (password alicepw, server 127.0.0.1, port
-- 5222, no TLS) and write to echo@bot.localhost.
--
-- Debian's prosody package starts its own server on port 5222 when it is installed: stop it first
-- (`sudo systemctl stop prosody`) or change the ports below. For a server on the internet, start
-- from Debian's /etc/prosody/prosody.cfg.lua instead and add only the Component block at the end.

-- Prosody refuses to run as root unless told to; a root shell in a container is common for a try.
-- Remove this line anywhere else.
run_as_root = true

-- Everything Prosody writes, relative to the directory it is started in.
data_path = "data"
pidfile = "prosody.pid"
log = { { levels = { min = "info" }, to = "file", filename = "prosody.log" } }

-- Only what a client session and a component need; no TLS (so no certificates), no
-- server-to-server, no HTTP.
modules_enabled = { "roster", "saslauth", "disco", "ping", "presence", "message", "iq", "posix" }
modules_disabled = { "s2s", "tls", "offline" }
-- Relative to this file, and holding no certificate: there is nothing to look for.
certificates = "."

-- Accounts stored hashed in data/; create them with `prosodyctl register` as above. Without TLS
-- the password crosses loopback only.
authentication = "internal_hashed"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

-- Clients on 5222, components (stanzahook) on 5347, both on loopback only.
c2s_ports = { 5222 }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }
http_ports = { }
https_ports = { }

VirtualHost "localhost"

-- The domain stanzahook serves: every address @bot.localhost reaches its webhook. The secret is
-- what stanzahook gives with --secret (or STANZAHOOK_SECRET).
Component "bot.localhost"
    component_secret = "change me: a long random secret"

-- Group chat, for a bot in rooms (the README's "Group chat"): rooms at rooms.localhost.
Component "rooms.localhost" "muc"
