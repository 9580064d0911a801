// An activation socket across fdsupd's re-exec: its snapshot, and taking it and its external workers back.
#include <spdlog/spdlog.h>

#include "model/activation.hpp"

namespace fdsup {

void ExternalWorker::restore(const ExternalWorkerSnapshot &snapshot)
{
    ready_ = snapshot.ready;
    draining_ = snapshot.draining;
    status_ = snapshot.status;
}

ActivationSnapshot ActivationSocket::snapshot() const
{
    ActivationSnapshot s;
    s.fd = listener_->fd().get();
    for (const auto &worker : workers_) {
        const WorkerChannel *channel = worker->channel();
        if (channel == nullptr || !channel->isOpen()) {
            continue; // gone: reaped later, nothing to carry
        }
        s.workers.push_back(ExternalWorkerSnapshot{
            channel->fd().get(), worker->id(), worker->pid(), worker->uid(), worker->gid(), worker->ready(),
            worker->draining(), worker->status(), static_cast<std::int64_t>(worker->since().count()),
            channel->welcomed, channel->capabilities});
    }
    return s;
}

Result<std::unique_ptr<ActivationSocket>> ActivationSocket::adopt(EventLoop &loop, const std::string &path,
                                                                  ActivationHost &host,
                                                                  const ActivationSnapshot &snapshot,
                                                                  std::vector<UniqueFd> fds)
{
    std::unique_ptr<ActivationSocket> socket(new ActivationSocket(loop, host));
    ActivationSocket *self = socket.get();
    const std::string &name = host.activeProfile().config.name;
    auto listener = UnixListener::adoptOwned(loop, std::move(fds.at(0)), "unix-seqpacket:" + path,
                                             name + "'s external worker",
                                             [self](UniqueFd fd) { self->admit(std::move(fd)); });
    if (!listener) {
        return Error{listener.error().code, "activation_socket: " + listener.error().message};
    }
    socket->listener_ = std::move(*listener);
    for (std::size_t k = 0; k < snapshot.workers.size(); ++k) {
        const ExternalWorkerSnapshot &w = snapshot.workers[k];
        Peer credentials;
        credentials.pid = w.pid;
        credentials.uid = w.uid;
        credentials.gid = w.gid;
        auto worker = std::make_unique<ExternalWorker>(host, w.id, credentials, Duration(w.sinceUsec));
        worker->restore(w);
        auto served = socket->serve(std::move(fds.at(k + 1)), std::move(worker));
        if (!served) {
            return Error{served.error().code, "external worker " + std::to_string(w.id) + " (pid " +
                                                  std::to_string(w.pid) + "): " + served.error().message};
        }
        (*served)->channel()->welcomed = w.welcomed;
        (*served)->channel()->capabilities = w.capabilities;
    }
    spdlog::info("{}: adopted the activation socket {} and {} external worker(s) across re-exec", name, path,
                 snapshot.workers.size());
    return socket;
}

} // namespace fdsup
