// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title FailSafe (test double)
/// @notice Emits the FailSafe event of SPEC section 1 with exactly the production signature.
///         It exists to test the exporter's listener on a real chain; it guards nothing.
contract FailSafe {
    event FailsafeEvent(address indexed user, uint256 indexed tokenId, uint256 timestamp);

    mapping(uint256 => bool) public triggered;

    function trigger(uint256 tokenId) external {
        triggered[tokenId] = true;
        emit FailsafeEvent(msg.sender, tokenId, block.timestamp);
    }

    /// @notice Backlog builder: `count` events in one transaction, no storage writes.
    function emitBatch(uint256 firstTokenId, uint256 count) external {
        for (uint256 i = 0; i < count; ++i) {
            emit FailsafeEvent(msg.sender, firstTokenId + i, block.timestamp);
        }
    }
}
