# Varnish in front of an app using cachekit's page cache (docs/views.md, "Behind Varnish and a CDN").
# tests/edge starts varnishd with this file, filling in the backend port and the purgers ACL.
vcl 4.1;

import std;
import purge;
import xkey;

backend app {
    .host = "127.0.0.1";
    .port = "@BACKEND_PORT@";
}

# Who may PURGE and BAN: the app's own servers, never a client.
acl purgers {
    @PURGERS@
}

sub vcl_recv {
    if (req.method == "PURGE" || req.method == "BAN") {
        if (client.ip !~ purgers) {
            return (synth(405, "Not allowed"));
        }
        if (req.method == "BAN") {
            # cachekit's VarnishPurger sends a checked pattern (no spaces, quotes or controls).
            if (req.http.Cachekit-Ban-Any-Host) {
                if (std.ban("obj.http.x-url ~ " + req.http.Cachekit-Ban)) {
                    return (synth(200, "Banned"));
                }
            } else if (std.ban("obj.http.x-host == " + req.http.host + " && obj.http.x-url ~ "
                    + req.http.Cachekit-Ban)) {
                return (synth(200, "Banned"));
            }
            return (synth(400, std.ban_error()));
        }
        if (req.http.xkey) {
            set req.http.n-gone = xkey.purge(req.http.xkey);
            return (synth(200, "Invalidated " + req.http.n-gone));
        }
        if (req.http.xkey-softpurge) {
            set req.http.n-gone = xkey.softpurge(req.http.xkey-softpurge);
            return (synth(200, "Softpurged " + req.http.n-gone));
        }
        return (hash);  # a URL purge: vcl_hit / vcl_miss below
    }
    # The purge headers mean nothing on other requests: a client must not pass them on.
    unset req.http.Cachekit-Ban;
    unset req.http.Cachekit-Soft-Purge;
    unset req.http.xkey;
    unset req.http.xkey-softpurge;
}

sub vcl_hit {
    if (req.method == "PURGE") {
        if (req.http.Cachekit-Soft-Purge) {
            purge.soft(0s);
        } else {
            purge.hard();
        }
        return (synth(200, "Purged"));
    }
}

sub vcl_miss {
    if (req.method == "PURGE") {
        if (req.http.Cachekit-Soft-Purge) {
            purge.soft(0s);
        } else {
            purge.hard();
        }
        return (synth(200, "Purged"));
    }
}

sub vcl_backend_response {
    # For bans (lurker-friendly: they test the object, not the request).
    set beresp.http.x-url = bereq.url;
    set beresp.http.x-host = bereq.http.host;
    # A soft purge leaves the page in grace: served stale while Varnish refetches it.
    set beresp.grace = 30s;
}

sub vcl_deliver {
    unset resp.http.x-url;
    unset resp.http.x-host;
    unset resp.http.xkey;  # the app exposes its tags to Varnish only
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
