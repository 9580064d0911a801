// The control API's JSON: the one place the model is turned into what clients read (docs/control-api.md).
#pragma once

#include <nlohmann/json.hpp>

#include "io/sockets.hpp"
#include "model/orphans.hpp"
#include "model/output.hpp"
#include "model/rollout.hpp"
#include "model/service.hpp"

namespace fdsup::render {

// A Service (Status): its state, instances (and slots without a live
// process, so an operator sees why one is missing), descriptor store,
// external workers, the rollout in progress, and the orphaned workers of a
// dead predecessor still serving it (`orphans`, null when none).
nlohmann::json service(const Service &service, const OrphanedWorkers *orphans = nullptr);
// A ServiceConnections (Connections): what the broker holds and has done,
// and every peer that joined the channel.
nlohmann::json connections(const Service &service);
// A Rollout.
nlohmann::json rollout(const RolloutRecord &record);
// The rollout in progress, else the last one, else null.
nlohmann::json currentRollout(const Service &service);
// What a queued restart looks like before it has begun (it has no id yet).
nlohmann::json queuedRollout(const Service &service, const RolloutOptions &options,
                             const char *state = "queued", const std::string &reason = {});
// A LogLine.
nlohmann::json logLine(const LogLine &line);
// Sockets: every socket with its addresses and the services that use it.
nlohmann::json sockets(const SocketSet &sockets, const std::vector<std::unique_ptr<Service>> &services);

} // namespace fdsup::render
