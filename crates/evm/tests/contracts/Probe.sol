// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// A list kept in storage, summed by a loop: the state a view call walks.
contract Ledger {
    uint256[] public items;

    function push(uint256 v) external {
        items.push(v);
    }

    function sum() external view returns (uint256 s) {
        for (uint256 i = 0; i < items.length; i++) {
            s += items[i];
        }
    }
}

/// One view call that exercises more of the EVM than a balance: a call into a second contract
/// (which loops over a storage array), the block's number, timestamp and chain id, and the hash
/// of a recent block. `check` reverts with a reason when asked to.
contract Probe {
    Ledger public ledger;

    constructor(Ledger l) {
        ledger = l;
    }

    function probe(uint256 back)
        external
        view
        returns (uint256 total, uint256 number, uint256 timestamp, bytes32 recent, uint256 chain)
    {
        total = ledger.sum();
        number = block.number;
        timestamp = block.timestamp;
        recent = blockhash(block.number - back);
        chain = block.chainid;
    }

    function check(uint256 minimum) external view returns (uint256 total) {
        total = ledger.sum();
        require(total >= minimum, "total below minimum");
    }
}
