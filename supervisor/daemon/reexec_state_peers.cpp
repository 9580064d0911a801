// The re-exec state's codec for the sockets whose peers fdsupd did not spawn itself: a wrapped service's
// preload socket (the shim's connections and their claims) and an activation socket (external workers).
#include "daemon/reexec_codec.hpp"

namespace fdsup::state_json {

Json encodePreload(const std::optional<PreloadSnapshot> &preload)
{
    if (!preload) {
        return nullptr;
    }
    Json peers = Json::array();
    for (const auto &p : preload->peers) {
        peers.push_back({{"fd", p.fd},
                         {"instance", p.instance},
                         {"pid", p.pid},
                         {"welcomed", p.welcomed},
                         {"capabilities", p.capabilities}});
    }
    Json claims = Json::array();
    for (const auto &c : preload->claims) {
        Json by = Json::array();
        for (const auto &[name, pid] : c.claimedBy) {
            by.push_back({{"listener", name}, {"pid", pid}});
        }
        claims.push_back({{"instance", c.instance},
                          {"connections", c.connections},
                          {"deadline_passed", c.deadlinePassed},
                          {"claimed", by}});
    }
    return {{"fd", preload->fd}, {"peers", peers}, {"claims", claims}};
}

PreloadSnapshot decodePreload(const Reader &r)
{
    PreloadSnapshot s;
    s.fd = fdField(r, "fd");
    r.at("peers").each([&](const Reader &p) {
        s.peers.push_back(PreloadPeerSnapshot{fdField(p, "fd"), p.at("instance").unsigned64(),
                                              p.at("pid").integer<pid_t>(1, kMaxInt),
                                              p.at("welcomed").boolean(), uintField(p, "capabilities")});
    });
    r.at("claims").each([&](const Reader &c) {
        PreloadClaimSnapshot claims;
        claims.instance = c.at("instance").unsigned64();
        claims.connections = uintField(c, "connections");
        claims.deadlinePassed = c.at("deadline_passed").boolean();
        c.at("claimed").each([&](const Reader &by) {
            claims.claimedBy.emplace_back(by.at("listener").string(),
                                          by.at("pid").integer<pid_t>(1, kMaxInt));
        });
        s.claims.push_back(std::move(claims));
    });
    return s;
}

Json encodeActivation(const std::optional<ActivationSnapshot> &activation)
{
    if (!activation) {
        return nullptr;
    }
    Json workers = Json::array();
    for (const auto &w : activation->workers) {
        workers.push_back({{"fd", w.fd},
                           {"id", w.id},
                           {"pid", w.pid},
                           {"uid", w.uid},
                           {"gid", w.gid},
                           {"ready", w.ready},
                           {"draining", w.draining},
                           {"status", w.status ? Json(*w.status) : Json()},
                           {"since_usec", w.sinceUsec},
                           {"welcomed", w.welcomed},
                           {"capabilities", w.capabilities}});
    }
    return {{"fd", activation->fd}, {"workers", workers}};
}

ActivationSnapshot decodeActivation(const Reader &r)
{
    ActivationSnapshot s;
    s.fd = fdField(r, "fd");
    r.at("workers").each([&](const Reader &w) {
        ExternalWorkerSnapshot worker;
        worker.fd = fdField(w, "fd");
        worker.id = w.at("id").unsigned64();
        worker.pid = w.at("pid").integer<pid_t>(1, kMaxInt);
        worker.uid = w.at("uid").integer<uid_t>(0, 0xffffffffLL);
        worker.gid = w.at("gid").integer<gid_t>(0, 0xffffffffLL);
        worker.ready = w.at("ready").boolean();
        worker.draining = w.at("draining").boolean();
        if (w.has("status")) {
            worker.status = w.at("status").string();
        }
        worker.sinceUsec = w.at("since_usec").integer<std::int64_t>(0, kMaxUsec);
        worker.welcomed = w.at("welcomed").boolean();
        worker.capabilities = uintField(w, "capabilities");
        s.workers.push_back(std::move(worker));
    });
    return s;
}

} // namespace fdsup::state_json
