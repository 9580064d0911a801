// SeqnumStream: compares each echo with the number sent.
#include "seqnum.hpp"

#include <algorithm>
#include <cstring>

namespace fdsup::load {

void SeqnumStream::encode()
{
    sent_ = {static_cast<char>(next_ >> 24), static_cast<char>(next_ >> 16), static_cast<char>(next_ >> 8),
             static_cast<char>(next_)};
}

std::string_view SeqnumStream::request() const
{
    return {sent_.data(), sent_.size()};
}

SeqnumStream::Progress SeqnumStream::feed(std::string_view data, size_t &consumed)
{
    size_t take = std::min(data.size(), echo_.size() - received_);
    std::memcpy(echo_.data() + received_, data.data(), take);
    received_ += take;
    consumed = take;
    if (received_ < echo_.size()) {
        return Progress::NeedMore;
    }
    if (echo_ != sent_) {
        return Progress::Error;
    }
    ++next_;
    encode();
    received_ = 0;
    return Progress::Complete;
}

} // namespace fdsup::load
